"""Import megatron-core's dataset and rotary-embedding modules under Debian's torch 1.13.

`import megatron.core` runs megatron/core/__init__.py, which imports the distributed and
model-parallel code; that needs torch APIs newer than 1.13 (torch.distributed._coalescing_manager).
The dataset modules themselves only need numpy, torch.utils.data and the prebuilt helpers_cpp
extension; the rotary-embedding modules only need torch. So we register bare package objects
for `megatron` and `megatron.core` (their __init__ files are skipped, nothing else is changed)
and import those modules directly: the reference code is megatron-core's own, unmodified.

megatron-core 0.16.1 (tests/reference/requirements.txt); its dataset code is identical in the
index construction to Megatron-LM main (0.20) as of this writing.
"""
import contextlib
import importlib.util
import pathlib
import sys
import types


def register_megatron_packages():
    """Registers bare `megatron` and `megatron.core` packages (their __init__ files skipped), so
    that single megatron-core modules import under Debian's torch 1.13."""
    if "megatron" in sys.modules:  # imported before (e.g. by another generator in run_all)
        root = pathlib.Path(list(sys.modules["megatron"].__path__)[0])
    else:
        spec = importlib.util.find_spec("megatron")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("megatron-core is not installed: .venv/bin/pip install "
                              "-r tests/reference/requirements.txt --no-deps")
        root = pathlib.Path(list(spec.submodule_search_locations)[0])
    for name, path in (("megatron", root), ("megatron.core", root / "core")):
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [str(path)]
            sys.modules[name] = mod
    import megatron.core.parallel_state  # noqa: F401  (breaks the utils <-> parallel_state cycle)


def import_megatron_rope():
    """megatron-core's RotaryEmbedding (with Llama 3.x rope_scaling) and YarnRotaryEmbedding,
    unmodified. Build and call them inside `cuda_device_is_cpu()`: they move their frequencies
    to torch.cuda.current_device() on first use."""
    register_megatron_packages()
    from megatron.core.models.common.embeddings import rotary_pos_embedding, yarn_rotary_pos_embedding
    return types.SimpleNamespace(
        RotaryEmbedding=rotary_pos_embedding.RotaryEmbedding,
        YarnRotaryEmbedding=yarn_rotary_pos_embedding.YarnRotaryEmbedding,
    )


@contextlib.contextmanager
def cuda_device_is_cpu():
    """Within the block torch.cuda.current_device() answers "cpu" (this process has no GPU), so
    megatron-core code that places tensors on "the current GPU" runs on the CPU instead."""
    import torch
    saved = torch.cuda.current_device
    torch.cuda.current_device = lambda: "cpu"
    try:
        yield
    finally:
        torch.cuda.current_device = saved


def import_megatron_datasets():
    register_megatron_packages()
    import torch
    if not torch.distributed.is_initialized():
        # BlendedDataset (0.16.1) calls torch.distributed.get_rank() on a cache miss even in a
        # single process; answer 0 as a one-rank job would.
        torch.distributed.get_rank = lambda group=None: 0
    from megatron.core.datasets import indexed_dataset, gpt_dataset, blended_dataset
    from megatron.core.datasets import blended_megatron_dataset_builder as builder
    from megatron.core.datasets import blended_megatron_dataset_config as config
    from megatron.core.datasets import utils
    return types.SimpleNamespace(
        IndexedDataset=indexed_dataset.IndexedDataset,
        IndexedDatasetBuilder=indexed_dataset.IndexedDatasetBuilder,
        GPTDataset=gpt_dataset.GPTDataset,
        GPTDatasetConfig=gpt_dataset.GPTDatasetConfig,
        MockGPTDataset=gpt_dataset.MockGPTDataset,
        BlendedDataset=blended_dataset.BlendedDataset,
        BlendedMegatronDatasetBuilder=builder.BlendedMegatronDatasetBuilder,
        get_blend_from_list=utils.get_blend_from_list,
        Split=utils.Split,
        gpt_dataset_module=gpt_dataset,
    )
