"""Streamed (ImageNet-scale) evaluation on a generated JPEG ImageFolder: the streamed path gives
the in-memory path's numbers, features are cached in shards and refused for other weights, and
the number of decoded images alive stays under ``data.max_images_held``."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from slimssl.data import (DataError, ImageTensorDataset, StreamingImageFolder, eval_transform,
                          load_split, ordered_batches, prefetch_for_cap)
from slimssl.engine.config import load_config
from slimssl.eval.family import knn_family
from slimssl.eval.feature_store import FeatureCacheError, FeatureStore, state_fingerprint
from slimssl.eval.linear_eval import ProbeCheckpoint, ProbeRecipe, linear_eval
from slimssl.eval.semisup import FinetuneRecipe, finetune_member, labelled_subset
from slimssl.models.registry import create


def write_jpeg_folder(root: Path, per_class: int = 40, test_per_class: int = 10,
                      classes: int = 3, size: int = 12, held_out: str = "val",
                      seed: int = 0) -> Path:
    """``root/{train,<held_out>}/c<k>/<i>.jpg``: seeded noise with a faint per-class tint (so
    kNN is neither at chance nor perfect)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), (held_out, test_per_class)):
        for c in range(classes):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 200, (size, size, 3)).astype(np.uint8)
                pixels[..., c % 3] += 30
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_jpeg_folder(tmp_path_factory.mktemp("jpeg"))


def data_cfg(path, mode: str, *extra: str):
    return load_config(None, [f"data.path={path}", f"data.mode={mode}", "data.image_size=12",
                              *extra]).data


def tiny_backbone(norm: str = "switchable"):
    torch.manual_seed(0)
    return create("resnet10_narrow", widths=[1.0, 0.5], norm=norm, stem="cifar",
                  num_classes=0).eval()


def test_data_mode_picks_the_path_for_train_val_and_train_test(folder, tmp_path):
    assert isinstance(load_split(data_cfg(folder, "memory"), "train"), ImageTensorDataset)
    streamed = load_split(data_cfg(folder, "stream"), "val")  # val/ is the held-out split
    assert isinstance(streamed, StreamingImageFolder) and len(streamed) == 30
    # auto: more images than data.max_images_held -> streamed, else decoded into memory
    assert isinstance(load_split(data_cfg(folder, "auto", "data.max_images_held=119"), "train"),
                      StreamingImageFolder)
    assert isinstance(load_split(data_cfg(folder, "auto", "data.max_images_held=120"), "train"),
                      ImageTensorDataset)
    other = write_jpeg_folder(tmp_path / "tt", per_class=2, test_per_class=1, held_out="test")
    assert len(load_split(data_cfg(other, "stream"), "test")) == 3


def test_streamed_batches_equal_the_decoded_images(folder):
    memory = load_split(data_cfg(folder, "memory"), "train")
    stream = load_split(data_cfg(folder, "stream"), "train")
    idx = torch.tensor([5, 0, 77, 119, 3])
    got = list(ordered_batches(stream, idx, batch_size=2, num_workers=0))
    assert [x.shape[0] for x, _ in got] == [2, 2, 1]
    assert torch.equal(torch.cat([x for x, _ in got]), memory.images[idx])
    assert torch.equal(torch.cat([y for _, y in got]), memory.labels[idx])
    # two workers, no batch across position 6 (a shard end), at most 16 images alive
    got = list(ordered_batches(stream, torch.arange(10), 4, num_workers=2, max_images_held=16,
                               breaks=[6]))
    assert [x.shape[0] for x, _ in got] == [4, 2, 4]
    assert torch.equal(torch.cat([x for x, _ in got]), memory.images[:10])
    # mean/std from the (whole, since it is small) seeded sample: the in-memory values
    assert np.allclose(stream.mean, memory.mean, atol=1e-6)
    assert np.allclose(stream.std, memory.std, atol=1e-6)


def test_labelled_subsets_come_from_the_file_list_and_match_memory(folder, tmp_path):
    memory = load_split(data_cfg(folder, "memory"), "train")
    stream = load_split(data_cfg(folder, "stream"), "train")
    idx_m, _ = labelled_subset(memory.labels, 0.1, tmp_path / "m")
    idx_s, path = labelled_subset(stream.labels, 0.1, tmp_path / "s")
    assert torch.equal(idx_m, idx_s) and idx_s.tolist() == json.loads(path.read_text())["indices"]
    assert torch.bincount(stream.labels[idx_s]).tolist() == [4, 4, 4]  # 10% of 40 per class
    sub = stream.subset(idx_s)
    assert isinstance(sub, StreamingImageFolder) and sub.mean == stream.mean
    assert [f.name for f in sub.files] == [stream.files[i].name for i in idx_s.tolist()]
    assert torch.equal(sub.to_memory().images, memory.images[idx_s])


def test_prefetch_respects_the_cap():
    assert prefetch_for_cap(32, 4, None) == 2  # DataLoader's default when there is no cap
    assert prefetch_for_cap(32, 4, 32 * 6) == 1  # 4 workers x 1 ahead + 2 in use = 6 batches
    assert prefetch_for_cap(32, 2, 10_000) == 2  # never more than the default
    assert prefetch_for_cap(32, 0, 64) == 0
    with pytest.raises(DataError, match="raise it to at least 192"):
        prefetch_for_cap(32, 4, 191)
    with pytest.raises(DataError, match="at least 64"):
        prefetch_for_cap(32, 0, 63)


def _store(directory, model, shard_size=64, refresh=False):
    return FeatureStore(directory, state_fingerprint(model), {"image_size": 12},
                        shard_size=shard_size, refresh=refresh)


def test_streamed_knn_equals_in_memory_knn(folder, tmp_path):
    model = tiny_backbone()
    specs = model.family()
    memory = [load_split(data_cfg(folder, "memory"), s) for s in ("train", "test")]
    stream = [load_split(data_cfg(folder, "stream"), s) for s in ("train", "test")]
    ks = (20, 5)
    ref = knn_family(model, specs, *memory, ks, batch_size=32)
    # 120 bank images in shards of 64 (two), queries in one; batches of 32 inside each shard
    got = knn_family(model, specs, *stream, ks, batch_size=32, store=_store(tmp_path, model))
    for r, g in zip(ref, got):
        assert {k: r[k] for k in r if k.startswith("knn_top1")} == \
            {k: g[k] for k in g if k.startswith("knn_top1")}
    assert 40 < ref[0]["knn_top1_k20"] < 100  # a real task, not a trivially separable one
    # the shards hold exactly the features of the in-memory path
    first = specs[0]
    shard = tmp_path / "train" / first.slug / "shard_00001.safetensors"
    with safe_open(str(shard), "pt") as f:
        feats, meta = f.get_tensor("features"), f.metadata()
        assert f.get_tensor("index").tolist() == list(range(64, 120))
    x = eval_transform(memory[0].mean, memory[0].std)(memory[0].images[64:120])
    with torch.no_grad(), model.subnet(first):
        assert torch.allclose(feats, model(x), atol=1e-5)
    assert json.loads(meta["member"]) == first.to_dict()
    assert meta["weights"] == state_fingerprint(model)
    settings = json.loads(meta["settings"])
    assert settings["image_size"] == 12  # the caller's settings, and the transform itself
    assert settings["transform"]["mean"] == [round(v, 6) for v in memory[0].mean]


def test_feature_cache_is_reused_and_refused_for_other_weights(folder, tmp_path):
    model = tiny_backbone()
    specs = model.family()
    train = load_split(data_cfg(folder, "stream"), "train")
    built = []

    def make():
        built.append(1)
        from slimssl.eval.linear_eval import FrozenFamily
        return FrozenFamily(model, specs)

    tf = lambda x: x.float() / 255  # noqa: E731
    first = _store(tmp_path, model).extract(make, specs, train, "train", tf, batch_size=32,
                                            num_workers=0)
    again = _store(tmp_path, model).extract(make, specs, train, "train", tf, batch_size=32,
                                            num_workers=0)
    assert len(built) == 1  # second call read every shard, built no model
    before = first[specs[0]].load()
    assert torch.equal(first[specs[1]].load(), again[specs[1]].load())
    assert torch.equal(first[specs[1]].rows(torch.tensor([100, 3, 64])),
                       first[specs[1]].load()[[100, 3, 64]])
    other = eval_transform([0.5] * 3, [0.25] * 3)  # another normalisation: other features
    with pytest.raises(FeatureCacheError, match="transform or BN settings differ"):
        _store(tmp_path, model).extract(make, specs, train, "train", other, num_workers=0)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # "training went on"
    with pytest.raises(FeatureCacheError, match="weights changed.*--refresh-features"):
        _store(tmp_path, model).extract(make, specs, train, "train", tf, num_workers=0)
    fresh = _store(tmp_path, model, refresh=True).extract(make, specs, train, "train", tf,
                                                          batch_size=32, num_workers=0)
    assert len(built) == 2 and not torch.equal(fresh[specs[0]].load(), before)


def _sets(folder, mode):
    return [load_split(data_cfg(folder, mode), s) for s in ("train", "test")]


TINY_PROBE = ProbeRecipe("tiny", epochs=2, lr=0.1, batch_size=32, schedule="cosine", bn=True)


@pytest.mark.parametrize("mode", ["fast", "augment"])
def test_streamed_linear_probes_equal_in_memory(folder, tmp_path, mode):
    """Same batches (one seeded order), same crops, same features: the numbers agree to float
    rounding; stated tolerance 1e-6 on every accuracy (they are equal here)."""
    model = tiny_backbone()
    specs = model.family()
    ref = linear_eval(model, specs, *_sets(folder, "memory"), 3, TINY_PROBE, mode,
                      batch_size=32, seed=1)
    got = linear_eval(model, specs, *_sets(folder, "stream"), 3, TINY_PROBE, mode,
                      batch_size=32, seed=1, store=_store(tmp_path, model))
    for kind in ("switchable", "slimmable"):
        for spec in specs:
            for key in ("top1", "top5"):
                assert abs(ref[kind][spec][key] - got[kind][spec][key]) <= 1e-6, (kind, spec, key)
    assert 0 < ref["switchable"][specs[0]]["top1"] < 100


def test_streamed_semisupervised_finetune_equals_in_memory(folder, tmp_path):
    model = tiny_backbone()
    spec = model.family()[1]
    recipe = FinetuneRecipe(epochs=1, batch_size=16)
    results = []
    for mode in ("memory", "stream"):
        train, test = _sets(folder, mode)
        idx, _ = labelled_subset(train.labels, 0.25, tmp_path / mode)
        results.append(finetune_member(model, spec, train.subset(idx), test, 3, recipe, seed=2))
    assert results[0] == pytest.approx(results[1], abs=1e-6)


def test_an_interrupted_probe_resumes_exactly(folder):
    """Epoch checkpoints (probes, optimizer, epochs done): stopping after epoch 1 and resuming
    gives the uninterrupted run's probes; the augment crops are seeded per epoch."""
    model = tiny_backbone()
    specs = model.family()
    train, test = _sets(folder, "stream")
    recipe = replace(TINY_PROBE, epochs=3)
    saved: list[dict] = []
    full = linear_eval(model, specs, train, test, 3, recipe, "augment", batch_size=32,
                       checkpoint=ProbeCheckpoint(save=lambda s: saved.append(copy.deepcopy(s))))

    class Stop(Exception):
        pass

    def stop_after_first(state):
        raise Stop

    with pytest.raises(Stop):
        linear_eval(model, specs, train, test, 3, recipe, "augment", batch_size=32,
                    checkpoint=ProbeCheckpoint(save=stop_after_first))
    resumed = linear_eval(model, specs, train, test, 3, recipe, "augment", batch_size=32,
                          checkpoint=ProbeCheckpoint(state=saved[0]))
    assert [s["epoch"] for s in saved] == [1, 2, 3]
    assert resumed == full


CAPPED_CHILD = r'''
import json, re, resource, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from slimssl.data import load_dataset
from slimssl.eval.feature_store import FeatureStore
from slimssl.eval.knn import knn_correct

folder, out, budget = sys.argv[1], sys.argv[2], int(sys.argv[3])
train, test = (load_dataset(folder, s, 128, mode="stream") for s in ("train", "test"))
_ = train.mean, test.mean  # (the seeded statistics sample is read before the limit)
family = lambda x: {"m": torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)}
to_float = lambda x: x.float().div(255)
store = FeatureStore(out, "weights", {}, shard_size=64)
def streamed():
    kw = dict(batch_size=8, num_workers=0, max_images_held=16)
    bank = store.extract(lambda: family, ["m"], train, "train", to_float, **kw)["m"]
    query = store.extract(lambda: family, ["m"], test, "test", to_float, **kw)["m"]
    return knn_correct(bank.shards, query.shards(), 2, (5,))[1]
streamed()  # warm-up: every code path and library loaded before the limit
vm = int(re.search(r"VmSize:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + budget, vm + budget))
store.refresh = True  # extract everything again, under the limit
result = {"streamed_queries": streamed()}
try:
    load_dataset(folder, "train", 128, mode="memory", num_threads=1)
    result["memory"] = "loaded"
except (MemoryError, RuntimeError) as err:
    result["memory"] = str(err).splitlines()[0][:200]
print(json.dumps(result))
'''


def test_streamed_evaluation_runs_under_an_address_space_limit(tmp_path):
    """300 images of 128 px (14.7 MB decoded) are streamed, extracted to shards and scored by
    kNN under an address-space limit of 10 MiB above the warmed-up process, with
    ``max_images_held=16`` (0.8 MB of images); decoding the same split into memory under that
    limit fails, so the limit is tight enough to catch a path that loads the split."""
    import os
    import subprocess
    import sys

    folder = write_jpeg_folder(tmp_path / "big", per_class=150, test_per_class=5, classes=2,
                               size=128, held_out="test")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", CAPPED_CHILD, str(folder),
                           str(tmp_path / "features"), str(10 * 2**20)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["streamed_queries"] == 10
    assert result["memory"] != "loaded" and "allocate" in result["memory"], result
