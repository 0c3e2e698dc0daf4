"""Does RMiPO or PerCE beat DPO on SmolLM2, and does a second MIPO round add? (issue 24; see PLAN.md)."""
