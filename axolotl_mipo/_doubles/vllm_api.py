"""vLLM's Python API as the ``vllm`` backend uses it, recorded from two releases' source.

Written by ``python -m axolotl_mipo._doubles.vllm_api SRC_ROOT VERSION`` (``SRC_ROOT``
holds one release's ``vllm/`` package, e.g. its unpacked wheel from PyPI; only
the files named in each entry's ``source`` are parsed, nothing is imported) and
read by :mod:`axolotl_mipo._doubles.fake_vllm`, which checks the backend's calls
against it when vLLM itself is not installed. 0.23.0 is what pip picks beside
axolotl 0.19 (Python 3.11), 0.33.0 the release beside axolotl 0.21 (Python 3.12+).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)


def _params(fn: ast.FunctionDef) -> dict:
    a = fn.args
    return {
        "positional": [x.arg for x in a.posonlyargs + a.args][1:],  # without self
        "positional_only": [x.arg for x in a.posonlyargs if x.arg != "self"],
        "keyword_only": [x.arg for x in a.kwonlyargs],
        "var_keyword": a.kwarg is not None,
    }


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    # the last definition wins (overloads come first)
    return [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name][-1]


def _fields(cls: ast.ClassDef) -> list[str]:
    return [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
            and not n.target.id.startswith("_")]


def record(root: Path, version: str) -> dict:
    def src(rel: str) -> str:
        return (root / rel).read_text()

    llm = _class(ast.parse(src("vllm/entrypoints/llm.py")), "LLM")
    sp_src = src("vllm/sampling_params.py")
    sp = _class(ast.parse(sp_src), "SamplingParams")
    engine_args = _class(ast.parse(src("vllm/engine/arg_utils.py")), "EngineArgs")
    quant_src = src("vllm/model_executor/layers/quantization/__init__.py")
    quant = re.search(r"QuantizationMethods = Literal\[(.*?)\]", quant_src, re.S).group(1)
    max_temp = re.search(r"if self\.temperature > ([0-9.]+):", sp_src)
    core_client = src("vllm/v1/engine/core_client.py")
    return {
        "version": version,
        "source": f"vllm {version} wheel (PyPI): vllm/entrypoints/llm.py, vllm/sampling_params.py, "
                  "vllm/engine/arg_utils.py, vllm/model_executor/layers/quantization/__init__.py, "
                  "vllm/v1/engine/core_client.py",
        "LLM.__init__": _params(_method(llm, "__init__")),
        "LLM.generate": _params(_method(llm, "generate")),
        "EngineArgs": _fields(engine_args),
        "SamplingParams": _fields(sp),
        "quantization_methods": re.findall(r'"([^"]+)"', quant),
        "temperature_max": float(max_temp.group(1)) if max_temp else None,
        "engine_core_shutdown": "def shutdown(self" in core_client,
    }


RECORDED = {'0.23.0': {'EngineArgs': ['model', 'enable_return_routed_experts', 'model_weights', 'served_model_name',
                           'tokenizer', 'hf_config_path', 'runner', 'convert', 'skip_tokenizer_init',
                           'enable_prompt_embeds', 'tokenizer_mode', 'trust_remote_code',
                           'allowed_local_media_path', 'allowed_media_domains', 'download_dir',
                           'safetensors_load_strategy', 'safetensors_prefetch_num_threads',
                           'safetensors_prefetch_block_size', 'load_format', 'config_format', 'dtype',
                           'kv_cache_dtype', 'seed', 'max_model_len', 'cudagraph_capture_sizes',
                           'max_cudagraph_capture_size', 'ir_op_priority', 'distributed_executor_backend',
                           'pipeline_parallel_size', 'master_addr', 'master_port', 'nnodes', 'node_rank',
                           'distributed_timeout_seconds', 'cpu_distributed_timeout_seconds', 'numa_bind',
                           'numa_bind_nodes', 'numa_bind_cpus', 'tensor_parallel_size',
                           'prefill_context_parallel_size', 'decode_context_parallel_size',
                           'dcp_comm_backend', 'dcp_kv_cache_interleave_size', 'cp_kv_cache_interleave_size',
                           'data_parallel_size', 'data_parallel_rank', 'data_parallel_start_rank',
                           'data_parallel_size_local', 'data_parallel_address', 'data_parallel_rpc_port',
                           'data_parallel_hybrid_lb', 'data_parallel_external_lb',
                           'data_parallel_multi_port_external_lb', 'data_parallel_backend',
                           'enable_expert_parallel', 'enable_ep_weight_filter', 'moe_backend',
                           'linear_backend', 'all2all_backend', 'enable_elastic_ep', 'enable_dbo',
                           'ubatch_size', 'dbo_decode_token_threshold', 'dbo_prefill_token_threshold',
                           'disable_nccl_for_dp_synchronization', 'eplb_config', 'enable_eplb',
                           'expert_placement_strategy', 'max_parallel_loading_workers', 'block_size',
                           'enable_prefix_caching', 'prefix_caching_hash_algo', 'disable_sliding_window',
                           'disable_cascade_attn', 'offload_backend', 'cpu_offload_gb', 'cpu_offload_params',
                           'offload_group_size', 'offload_num_in_group', 'offload_prefetch_step',
                           'offload_params', 'gpu_memory_utilization', 'kv_cache_memory_bytes',
                           'max_num_batched_tokens', 'max_num_partial_prefills', 'max_long_partial_prefills',
                           'long_prefill_token_threshold', 'max_num_seqs', 'max_logprobs', 'logprobs_mode',
                           'use_fp64_gumbel', 'disable_log_stats', 'aggregate_engine_logging', 'revision',
                           'code_revision', 'hf_token', 'hf_overrides', 'tokenizer_revision', 'quantization',
                           'quantization_config', 'allow_deprecated_quantization', 'enforce_eager',
                           'disable_custom_all_reduce', 'language_model_only', 'limit_mm_per_prompt',
                           'enable_mm_embeds', 'interleave_mm_strings', 'media_io_kwargs',
                           'mm_processor_kwargs', 'mm_processor_cache_gb', 'mm_processor_cache_type',
                           'mm_shm_cache_max_object_size_mb', 'mm_encoder_only', 'mm_encoder_tp_mode',
                           'mm_encoder_attn_backend', 'mm_encoder_attn_dtype', 'mm_encoder_fp8_scale_path',
                           'mm_encoder_fp8_scale_save_path', 'mm_encoder_fp8_scale_save_margin',
                           'io_processor_plugin', 'renderer_num_workers', 'skip_mm_profiling',
                           'video_pruning_rate', 'mm_tensor_ipc', 'enable_lora', 'max_loras', 'max_lora_rank',
                           'default_mm_loras', 'fully_sharded_loras', 'max_cpu_loras', 'lora_dtype',
                           'lora_target_modules', 'enable_tower_connector_lora', 'specialize_active_lora',
                           'enable_mixed_moe_lora_format', 'ray_workers_use_nsight',
                           'num_gpu_blocks_override', 'model_loader_extra_config', 'ignore_patterns',
                           'enable_chunked_prefill', 'disable_chunked_mm_input', 'scheduler_reserve_full_isl',
                           'disable_hybrid_kv_cache_manager', 'structured_outputs_config', 'reasoning_parser',
                           'reasoning_parser_plugin', 'speculative_config', 'spec_method', 'spec_model',
                           'spec_tokens', 'show_hidden_metrics_for_version', 'otlp_traces_endpoint',
                           'collect_detailed_traces', 'kv_cache_metrics', 'kv_cache_metrics_sample',
                           'cudagraph_metrics', 'enable_layerwise_nvtx_tracing', 'enable_mfu_metrics',
                           'enable_logging_iteration_details', 'enable_mm_processor_stats',
                           'scheduling_policy', 'scheduler_cls', 'pooler_config', 'compilation_config',
                           'attention_config', 'mamba_config', 'kernel_config', 'enable_flashinfer_autotune',
                           'worker_cls', 'worker_extension_cls', 'profiler_config', 'kv_transfer_config',
                           'kv_events_config', 'ec_transfer_config', 'reasoning_config', 'generation_config',
                           'enable_sleep_mode', 'enable_cumem_allocator', 'override_generation_config',
                           'model_impl', 'override_attention_dtype', 'attention_backend',
                           'calculate_kv_scales', 'kv_cache_dtype_skip_layers', 'mamba_cache_dtype',
                           'mamba_ssm_cache_dtype', 'mamba_block_size', 'mamba_cache_mode', 'mamba_backend',
                           'enable_mamba_cache_stochastic_rounding', 'mamba_cache_philox_rounds',
                           'additional_config', 'use_tqdm_on_load', 'pt_load_map_location',
                           'logits_processors', 'async_scheduling', 'stream_interval',
                           'kv_sharing_fast_prefill', 'optimization_level', 'performance_mode',
                           'kv_offloading_size', 'kv_offloading_backend', 'tokens_only', 'shutdown_timeout',
                           'weight_transfer_config', 'fail_on_environ_validation', 'gdn_prefill_backend'],
            'LLM.__init__': {'keyword_only': ['runner', 'convert', 'tokenizer', 'tokenizer_mode',
                                              'skip_tokenizer_init', 'trust_remote_code',
                                              'allowed_local_media_path', 'allowed_media_domains',
                                              'tensor_parallel_size', 'dtype', 'quantization', 'revision',
                                              'tokenizer_revision', 'chat_template', 'seed',
                                              'gpu_memory_utilization', 'cpu_offload_gb',
                                              'offload_group_size', 'offload_num_in_group',
                                              'offload_prefetch_step', 'offload_params', 'enforce_eager',
                                              'enable_return_routed_experts', 'disable_custom_all_reduce',
                                              'hf_token', 'hf_overrides', 'mm_processor_kwargs',
                                              'pooler_config', 'structured_outputs_config', 'profiler_config',
                                              'attention_config', 'kv_cache_memory_bytes',
                                              'compilation_config', 'quantization_config',
                                              'logits_processors', 'spec_method', 'spec_model',
                                              'spec_tokens'],
                             'positional': ['model'],
                             'positional_only': [],
                             'var_keyword': True},
            'LLM.generate': {'keyword_only': ['use_tqdm', 'lora_request', 'priority', 'tokenization_kwargs',
                                              'mm_processor_kwargs'],
                             'positional': ['prompts', 'sampling_params'],
                             'positional_only': [],
                             'var_keyword': False},
            'SamplingParams': ['n', 'presence_penalty', 'frequency_penalty', 'repetition_penalty',
                               'temperature', 'top_p', 'top_k', 'min_p', 'seed', 'stop', 'stop_token_ids',
                               'ignore_eos', 'max_tokens', 'min_tokens', 'logprobs', 'prompt_logprobs',
                               'logprob_token_ids', 'flat_logprobs', 'detokenize', 'skip_special_tokens',
                               'spaces_between_special_tokens', 'include_stop_str_in_output', 'output_kind',
                               'skip_clone', 'output_text_buffer_length', 'structured_outputs', 'logit_bias',
                               'allowed_token_ids', 'extra_args', 'routed_experts_prompt_start', 'bad_words',
                               'skip_reading_prefix_cache', 'thinking_token_budget', 'repetition_detection'],
            'engine_core_shutdown': True,
            'quantization_methods': ['awq', 'fp8', 'fbgemm_fp8', 'fp_quant', 'modelopt', 'modelopt_fp4',
                                     'modelopt_mxfp8', 'modelopt_mixed', 'gguf', 'auto_gptq', 'gptq',
                                     'gptq_marlin', 'awq_marlin', 'humming', 'compressed-tensors',
                                     'bitsandbytes', 'experts_int8', 'quark', 'moe_wna16', 'torchao', 'inc',
                                     'mxfp4', 'gpt_oss_mxfp4', 'deepseek_v4_fp8', 'online', 'fp8_per_tensor',
                                     'fp8_per_block', 'int8_per_channel_weight_only', 'mxfp8'],
            'source': 'vllm 0.23.0 wheel (PyPI): vllm/entrypoints/llm.py, vllm/sampling_params.py, '
                      'vllm/engine/arg_utils.py, vllm/model_executor/layers/quantization/__init__.py, '
                      'vllm/v1/engine/core_client.py',
            'temperature_max': None,
            'version': '0.23.0'},
 '0.33.0': {'EngineArgs': ['model', 'enable_return_routed_experts', 'return_sampling_mask', 'model_weights',
                           'served_model_name', 'tokenizer', 'hf_config_path', 'runner', 'convert',
                           'skip_tokenizer_init', 'enable_prompt_embeds', 'tokenizer_mode',
                           'trust_remote_code', 'allowed_local_media_path', 'allowed_media_domains',
                           'download_dir', 'safetensors_load_strategy', 'safetensors_prefetch_num_threads',
                           'safetensors_prefetch_block_size', 'load_format', 'config_format', 'dtype',
                           'kv_cache_dtype', 'seed', 'max_model_len', 'cudagraph_capture_sizes',
                           'max_cudagraph_capture_size', 'ir_op_priority', 'distributed_executor_backend',
                           'pipeline_parallel_size', 'master_addr', 'master_port', 'nnodes', 'node_rank',
                           'distributed_timeout_seconds', 'cpu_distributed_timeout_seconds', 'numa_bind',
                           'numa_bind_nodes', 'numa_bind_cpus', 'device_ids', 'tensor_parallel_size',
                           'prefill_context_parallel_size', 'decode_context_parallel_size',
                           'dcp_comm_backend', 'dcp_q_replicate', 'dcp_kv_cache_interleave_size',
                           'cp_kv_cache_interleave_size', 'data_parallel_size', 'data_parallel_rank',
                           'data_parallel_start_rank', 'data_parallel_size_local', 'data_parallel_address',
                           'data_parallel_rpc_port', 'data_parallel_hybrid_lb', 'data_parallel_external_lb',
                           'data_parallel_multi_port_external_lb', 'data_parallel_backend', 'enable_hc_sp',
                           'enable_expert_parallel', 'enable_batch_sharded_sampling',
                           'enable_ep_weight_filter', 'moe_backend', 'linear_backend',
                           'sparse_indexer_topk_backend', 'all2all_backend', 'enable_elastic_ep',
                           'elastic_ep_max_dp_size', 'enable_dbo', 'ubatch_size',
                           'dbo_decode_token_threshold', 'dp_sync_interval', 'dbo_prefill_token_threshold',
                           'disable_nccl_for_dp_synchronization', 'eplb_config', 'enable_eplb',
                           'expert_placement_strategy', 'max_parallel_loading_workers', 'block_size',
                           'enable_prefix_caching', 'prefix_caching_hash_algo',
                           'prefix_cache_retention_interval', 'disable_sliding_window',
                           'disable_cascade_attn', 'offload_backend', 'cpu_offload_gb', 'cpu_offload_params',
                           'offload_group_size', 'offload_num_in_group', 'offload_prefetch_step',
                           'offload_params', 'gpu_memory_utilization', 'kv_cache_memory_bytes',
                           'max_num_batched_tokens', 'max_num_scheduled_tokens',
                           'long_prefill_token_threshold', 'long_prefill_token_threshold_adaptive',
                           'max_num_seqs', 'max_num_active_seqs', 'max_num_queued_reqs',
                           'max_num_queued_tokens', 'max_logprobs', 'logprobs_mode', 'use_fp64_gumbel',
                           'enable_trace_replay', 'disable_log_stats', 'aggregate_engine_logging', 'revision',
                           'code_revision', 'hf_token', 'hf_overrides', 'model_class_overrides',
                           'tokenizer_revision', 'quantization', 'quantization_config',
                           'allow_deprecated_quantization', 'enforce_eager', 'disable_custom_all_reduce',
                           'enable_shm_tensor_arena', 'language_model_only', 'limit_mm_per_prompt',
                           'enable_mm_embeds', 'interleave_mm_strings', 'media_io_kwargs',
                           'mm_processor_kwargs', 'mm_processor_cache_gb', 'mm_processor_cache_type',
                           'mm_hasher_algorithm', 'mm_shm_cache_max_object_size_mb', 'mm_encoder_only',
                           'mm_encoder_tp_mode', 'mm_encoder_attn_backend', 'mm_encoder_attn_dtype',
                           'mm_encoder_fp8_scale_path', 'mm_encoder_fp8_scale_save_path',
                           'mm_encoder_fp8_scale_save_margin', 'io_processor_plugin', 'renderer_num_workers',
                           'skip_mm_profiling', 'video_pruning_rate', 'video_pruning_method', 'mm_tensor_ipc',
                           'mm_processor_device', 'mm_ipc_gpu_memory_gb', 'mm_device_do_normalize',
                           'enable_lora', 'max_loras', 'max_lora_rank', 'default_mm_loras',
                           'fully_sharded_loras', 'max_cpu_loras', 'lora_dtype', 'lora_target_modules',
                           'enable_tower_connector_lora', 'specialize_active_lora',
                           'enable_mixed_moe_lora_format', 'enable_moe_shared_loras', 'max_lora_cls_labels',
                           'ray_workers_use_nsight', 'num_gpu_blocks_override', 'model_loader_extra_config',
                           'ignore_patterns', 'enable_chunked_prefill', 'disable_chunked_mm_input',
                           'scheduler_reserve_full_isl', 'prefill_schedule_interval', 'watermark',
                           'disable_hybrid_kv_cache_manager', 'structured_outputs_config',
                           'aux_output_config', 'reasoning_parser', 'reasoning_parser_plugin',
                           'speculative_config', 'spec_method', 'spec_model', 'spec_tokens',
                           'watermark_config', 'diffusion_config', 'show_hidden_metrics_for_version',
                           'otlp_traces_endpoint', 'collect_detailed_traces',
                           'per_request_spec_decode_metrics', 'kv_cache_metrics', 'kv_cache_metrics_sample',
                           'custom_histogram_buckets', 'cudagraph_metrics', 'enable_layerwise_nvtx_tracing',
                           'enable_mfu_metrics', 'enable_logging_iteration_details', 'jit_monitor_mode',
                           'jit_monitor_verbose', 'enable_mm_processor_stats', 'scheduling_policy',
                           'scheduler_cls', 'pooler_config', 'compilation_config', 'attention_config',
                           'engram_config', 'mamba_config', 'kernel_config', 'enable_flashinfer_autotune',
                           'monokernel', 'worker_cls', 'worker_extension_cls', 'profiler_config',
                           'logging_config', 'log_level', 'log_config_file', 'kv_transfer_config',
                           'kv_events_config', 'ec_transfer_config', 'ec_manager_config', 'reasoning_config',
                           'generation_config', 'enable_sleep_mode', 'sleep_mode_backend',
                           'sleep_mode_offload_cudagraph', 'sleep_preserve_parameter_names',
                           'enable_cumem_allocator', 'enable_nccl_comm_suspend', 'override_generation_config',
                           'model_impl', 'attention_backend', 'kv_cache_dtype_skip_layers',
                           'mamba_cache_dtype', 'mamba_ssm_cache_dtype', 'mamba_block_size',
                           'prefix_match_unit', 'mamba_cache_mode', 'enable_mamba_shared_prefix_checkpoint',
                           'replayssm_buffer_len', 'use_replayssm', 'mamba_backend', 'mamba_ssu_algorithm',
                           'enable_mamba_cache_stochastic_rounding', 'mamba_cache_philox_rounds',
                           'additional_config', 'use_tqdm_on_load', 'pt_load_map_location',
                           'logits_processors', 'async_scheduling', 'stream_interval',
                           'kv_sharing_fast_prefill', 'swa_bounded_replay', 'optimization_level',
                           'performance_mode', 'fault_tolerance_config', 'enable_fault_tolerance',
                           'kv_offloading_size', 'kv_offloading_backend', 'tokens_only', 'shutdown_timeout',
                           'watchdog_config', 'weight_transfer_config', 'fail_on_environ_validation',
                           'gdn_prefill_backend', 'kda_prefill_backend', 'kda_decode_backend'],
            'LLM.__init__': {'keyword_only': ['runner', 'convert', 'tokenizer', 'tokenizer_mode',
                                              'skip_tokenizer_init', 'trust_remote_code',
                                              'allowed_local_media_path', 'allowed_media_domains',
                                              'tensor_parallel_size', 'dtype', 'quantization', 'revision',
                                              'tokenizer_revision', 'chat_template', 'seed',
                                              'gpu_memory_utilization', 'cpu_offload_gb',
                                              'offload_group_size', 'offload_num_in_group',
                                              'offload_prefetch_step', 'offload_params', 'enforce_eager',
                                              'enable_return_routed_experts', 'return_sampling_mask',
                                              'disable_custom_all_reduce', 'hf_token', 'hf_overrides',
                                              'mm_processor_kwargs', 'pooler_config',
                                              'structured_outputs_config', 'profiler_config',
                                              'attention_config', 'kv_cache_memory_bytes',
                                              'compilation_config', 'quantization_config',
                                              'logits_processors', 'spec_method', 'spec_model',
                                              'spec_tokens'],
                             'positional': ['model'],
                             'positional_only': [],
                             'var_keyword': True},
            'LLM.generate': {'keyword_only': ['use_tqdm', 'lora_request', 'priority', 'tokenization_kwargs',
                                              'mm_processor_kwargs'],
                             'positional': ['prompts', 'sampling_params'],
                             'positional_only': [],
                             'var_keyword': False},
            'SamplingParams': ['n', 'presence_penalty', 'frequency_penalty', 'repetition_penalty',
                               'temperature', 'watermarking', 'top_p', 'top_k', 'min_p', 'seed', 'stop',
                               'stop_token_ids', 'ignore_eos', 'max_tokens', 'min_tokens', 'logprobs',
                               'prompt_logprobs', 'prompt_logprob_token_ids', 'prompt_logprob_start',
                               'logprob_token_ids', 'flat_logprobs', 'detokenize', 'skip_special_tokens',
                               'spaces_between_special_tokens', 'include_stop_str_in_output', 'output_kind',
                               'stream_interval', 'skip_clone', 'output_text_buffer_length',
                               'structured_outputs', 'logit_bias', 'allowed_token_ids', 'extra_args',
                               'bad_words', 'skip_reading_prefix_cache', 'thinking_token_budget',
                               'repetition_detection', 'routed_experts_prompt_start',
                               'trace_decode_token_ids'],
            'engine_core_shutdown': True,
            'quantization_methods': ['awq', 'auto_awq', 'fp8', 'fbgemm_fp8', 'fp_quant', 'modelopt',
                                     'modelopt_fp4', 'modelopt_mxfp8', 'modelopt_mixed', 'auto_gptq', 'gptq',
                                     'gptq_marlin', 'awq_marlin', 'humming', 'compressed-tensors',
                                     'experts_int8', 'quark', 'moe_wna16', 'torchao', 'inc', 'mxfp4',
                                     'gpt_oss_mxfp4', 'deepseek_v4_fp8', 'online', 'fp8_per_tensor',
                                     'fp8_per_block', 'fp8_per_channel', 'int8_per_channel_weight_only',
                                     'nvfp4_per_token', 'mxfp8'],
            'source': 'vllm 0.33.0 wheel (PyPI): vllm/entrypoints/llm.py, vllm/sampling_params.py, '
                      'vllm/engine/arg_utils.py, vllm/model_executor/layers/quantization/__init__.py, '
                      'vllm/v1/engine/core_client.py',
            'temperature_max': 2.0,
            'version': '0.33.0'}}


def installed_api() -> dict | None:
    """The same record for the vLLM installed here, read from its source; ``None`` when there is none.

    Found through the installed distribution, not ``sys.modules`` (where a test may have put a stand-in).
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("vllm")
    except metadata.PackageNotFoundError:
        return None
    root = Path(dist.locate_file(""))
    if not (root / "vllm" / "entrypoints" / "llm.py").exists():
        return None
    return record(root, dist.version)


if __name__ == "__main__":
    print(json.dumps(record(Path(sys.argv[1]), sys.argv[2]), indent=1))
