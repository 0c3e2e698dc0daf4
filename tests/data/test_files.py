"""Reading row files and cleaning their text (axolotl_mipo/data/files.py)."""


def test_fast_control_character_removal_matches_clean_text():
    from axolotl_mipo.data.files import CONTROL
    from axolotl_mipo.data.rows import clean_text

    cases = ["plain text", "tab\tand\nnewlines\r\n kept", "nul\x00 bell\x07 esc\x1b[31m del\x7f",
             "c1\x85\x9f and é ü", "lone \ud800 surrogate", "", "\x00\x01\x02"]
    for text in cases:
        assert clean_text(text) == CONTROL.sub("", text), repr(text)
