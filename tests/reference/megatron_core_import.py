"""Import megatron-core's dataset modules under Debian's torch 1.13.

`import megatron.core` runs megatron/core/__init__.py, which imports the distributed and
model-parallel code; that needs torch APIs newer than 1.13 (torch.distributed._coalescing_manager).
The dataset modules themselves only need numpy, torch.utils.data and the prebuilt helpers_cpp
extension. So we register bare package objects for `megatron` and `megatron.core` (their
__init__ files are skipped, nothing else is changed) and import the dataset modules directly:
the code under test is megatron-core's own, unmodified.

megatron-core 0.16.1 (tests/reference/requirements.txt); its dataset code is identical in the
index construction to Megatron-LM main (0.20) as of this writing.
"""
import importlib.util
import pathlib
import sys
import types


def import_megatron_datasets():
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
