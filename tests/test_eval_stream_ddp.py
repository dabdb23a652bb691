"""Two gloo processes evaluate a streamed folder as one process does: each rank extracts its
feature shards, scores its share of the kNN queries (counts summed), and trains the probes on
gathered features of its half of every batch; per-member fine-tuning averages gradients and
ends identical on both ranks."""

from __future__ import annotations

import json
import os
import traceback
from pathlib import Path

import torch

from test_eval_stream import TINY_PROBE, _sets, tiny_backbone, write_jpeg_folder
from tinyrun import run_ranks
from slimssl.eval.family import knn_family
from slimssl.eval.feature_store import FeatureStore, state_fingerprint
from slimssl.eval.linear_eval import linear_eval
from slimssl.eval.semisup import FinetuneRecipe, finetune_member


def evaluate(folder: Path, features: Path) -> dict:
    """kNN, fast and augment probes of the tiny family on the streamed folder."""
    model = tiny_backbone()
    specs = model.family()
    train, test = _sets(folder, "stream")
    store = FeatureStore(features, state_fingerprint(model), {"image_size": 12}, shard_size=64)
    out = {"knn": knn_family(model, specs, train, test, (20, 5), batch_size=32, store=store)}
    # 99 images: the last global batch of 32 holds 3, which the sampler pads to 4 (2 per rank)
    for mode in ("fast", "augment"):
        res = linear_eval(model, specs, train.subset(torch.arange(99)), test, 3, TINY_PROBE,
                          mode, batch_size=32, seed=1, store=store, train_split="train99")
        out[mode] = {kind: {s.label: acc for s, acc in per.items()} for kind, per in res.items()}
    # 97 images in batches of 16: the last holds 1 image, rank 1 only a padding row (weight 0)
    out["finetune"] = finetune_member(model, specs[1], train.subset(torch.arange(97)), test, 3,
                                      FinetuneRecipe(epochs=2, batch_size=16), seed=2)
    for row in out["knn"]:
        row.pop("knn_seconds")
    return out


def _worker(rank: int, folder: str, out: str, init_file: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=2)
    try:
        result = evaluate(Path(folder), Path(out) / "features")
    except Exception as err:  # noqa: BLE001 - the parent shows the trace
        result = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()}
    finally:
        torch.distributed.destroy_process_group()
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


def test_two_processes_equal_one(tmp_path):
    folder = write_jpeg_folder(tmp_path / "jpeg")
    (tmp_path / "ddp").mkdir()
    run_ranks(_worker, lambda r: (str(folder), str(tmp_path / "ddp"), str(tmp_path / "init")),
              timeout=180)
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert "error" not in r, r.get("trace")
    single = json.loads(json.dumps(evaluate(folder, tmp_path / "single")))
    # the shards: rank 0 wrote train shard 0 and the test shard, rank 1 train shard 1
    assert sorted(p.name for p in (tmp_path / "ddp" / "features" / "train" / "w1.00").iterdir()) \
        == ["meta.json", "shard_00000.safetensors", "shard_00001.safetensors"]
    # every rank ends with the same numbers (fine-tuning too: averaged gradients, then averaged
    # BN statistics; its BatchNorms normalise each rank's half batch, so it is not compared
    # with one process)
    assert ranks[0] == ranks[1]
    got = ranks[0]
    assert got["knn"] == single["knn"] and got["fast"] == single["fast"]  # exactly
    # augment: each rank embeds half of each batch (other conv blocking): stated tolerance one
    # test image (100/30 %) on each accuracy; here they agree exactly
    for kind, per in single["augment"].items():
        for member, acc in per.items():
            for key in ("top1", "top5"):
                assert abs(got["augment"][kind][member][key] - acc[key]) <= 100 / 30 + 1e-9
