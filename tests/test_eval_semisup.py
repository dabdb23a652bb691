"""Semi-supervised evaluation (DSPNet 0.A.3): class-balanced subsets saved in the run directory,
fine-tuning each member on its own copy, linear-only probes."""

import json
from dataclasses import replace

import pytest
import torch

from slimssl.data import load_dataset
from slimssl.eval.linear_eval import SEMISUP_LINEAR
from slimssl.eval.semisup import (FinetuneRecipe, finetune_family, fraction_tag,
                                  labelled_subset, semisup_linear, subset_path)
from slimssl.models.registry import create
from slimssl.nn.spec import SubnetSpec

SPECS = [SubnetSpec(1.0), SubnetSpec(0.5)]


@pytest.mark.parametrize("fraction, per_class", [(0.01, [1, 1, 3]), (0.1, [10, 14, 25])])
def test_subset_saved_in_run_dir_with_exact_balanced_counts(tmp_path, fraction, per_class):
    sizes = [100, 137, 250]  # uneven classes: round(fraction * n_c) per class, at least 1
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]
    idx, path = labelled_subset(labels, fraction, tmp_path, seed=5)
    assert path == subset_path(tmp_path, fraction, 5) and path.parent.parent == tmp_path
    assert path.name == f"labelled_{fraction_tag(fraction)}_seed5.json"
    assert torch.bincount(labels[idx], minlength=3).tolist() == per_class
    assert len(set(idx.tolist())) == len(idx)
    saved = json.loads(path.read_text())
    assert saved["indices"] == idx.tolist() and saved["count"] == sum(per_class)
    assert (saved["fraction"], saved["seed"], saved["num_train"]) == (fraction, 5, len(labels))
    again, _ = labelled_subset(labels, fraction, tmp_path, seed=5)  # re-read, same labels
    assert torch.equal(again, idx)


def test_stale_subset_of_another_dataset_is_redrawn(tmp_path):
    labels = torch.arange(10).repeat(20)
    labelled_subset(labels, 0.1, tmp_path)
    bigger = torch.arange(10).repeat(30)
    idx, path = labelled_subset(bigger, 0.1, tmp_path)
    assert torch.bincount(bigger[idx]).tolist() == [3] * 10
    assert json.loads(path.read_text())["num_train"] == 300


def test_fraction_tags():
    assert fraction_tag(0.01) == "1pct" and fraction_tag(0.1) == "10pct"


@pytest.fixture(scope="module")
def setup():
    train = load_dataset("synthetic", "train", 8, synthetic_samples=128)
    test = load_dataset("synthetic", "test", 8, synthetic_samples=128)
    torch.manual_seed(0)
    model = create("resnet10_narrow", widths=[1.0, 0.5], stem="cifar").eval()
    return model, train, test


def test_finetune_each_member_on_a_copy(setup):
    model, train, test = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = FinetuneRecipe(epochs=6, batch_size=32, backbone_lr=0.01, head_lr=0.1)
    res = finetune_family(model, SPECS, train, test, 10, recipe)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert res[SPECS[0]]["feature_dim"] == 2 * res[SPECS[1]]["feature_dim"]
    assert all(r["top1"] > 30 for r in res.values()), res  # chance is 10%


def test_linear_only_trains_one_switchable_probe_per_member(setup):
    model, train, test = setup
    res = semisup_linear(model, SPECS, train, test, 10, replace(SEMISUP_LINEAR, epochs=5,
                                                                 batch_size=32))
    assert set(res) == set(SPECS)
    assert res[SPECS[0]]["feature_dim"] != res[SPECS[1]]["feature_dim"]
