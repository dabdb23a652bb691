"""Supervised slimmable fine-tuning (DSPNet appendix 0.B): the sandwich sampler, detached
inplace-distillation targets, one forward pass per table row, single-network init, and the
``slimssl finetune RUN --slimmable`` CLI on a tiny pre-trained run."""

import json

import pytest
import torch

from slimssl.cli import main
from slimssl.data import load_dataset, load_split
from slimssl.engine.build import load_pretrained
from slimssl.eval.report import read_results
from slimssl.eval.semisup import classify_family
from slimssl.methods.base import SubnetOutput
from slimssl.methods.supervised import SupervisedClassifier
from slimssl.models.registry import create
from slimssl.nn.norm import _SlimBatchNorm
from slimssl.nn.spec import SubnetSpec
from slimssl.nn.transplant import load_single_network
from slimssl.recipes.supervised import SupervisedSlimmable, sandwich_sampler

WIDTHS = [1.0, 0.75, 0.5, 0.25]


def _recipe(model, k=4, distill=True, label_weight=0.0):
    return SupervisedSlimmable(sandwich_sampler(model, k, seed=0), distill, label_weight)


def test_sandwich_holds_largest_and_smallest_for_every_family_kind():
    switchable = create("resnet10_narrow", widths=WIDTHS, num_classes=0)
    for _ in range(3):  # switchable width family: all members, largest then smallest first
        specs = _recipe(switchable, k=2).sample(0.0)
        assert specs[:2] == [SubnetSpec(1.0), SubnetSpec(0.25)]
        assert sorted(s.width for s in specs) == sorted(WIDTHS)
    depths = [(2, 2, 2, 2), (1, 1, 1, 1), (2, 1, 2, 1)]
    product = create("resnet18", widths=[1.0, 0.5], depth_choices=depths, base_width=8,
                     num_classes=0)
    recipe, seen = _recipe(product, k=3), set()
    for _ in range(20):  # width x depth: largest, smallest, one other drawn at random
        specs = recipe.sample(0.0)
        assert specs[:2] == [SubnetSpec(1.0, (2, 2, 2, 2)), SubnetSpec(0.5, (1, 1, 1, 1))]
        assert len(specs) == 3 and specs[2] not in specs[:2]
        seen.add(specs[2])
    assert len(seen) > 1
    universal = create("resnet10_narrow", widths=WIDTHS, norm="universal",
                       width_range=(0.25, 1.0), num_classes=0)
    for _ in range(3):
        specs = _recipe(universal).sample(0.0)
        assert [s.width for s in specs[:2]] == [1.0, 0.25] and len(specs) == 4
        assert all(0.25 <= s.width <= 1.0 for s in specs)


def test_inplace_distillation_targets_are_detached():
    recipe = _recipe(create("resnet10_narrow", widths=[1.0, 0.5], num_classes=0))
    teacher_logits = torch.randn(6, 5, requires_grad=True)
    student_logits = torch.randn(6, 5, requires_grad=True)
    teacher = SubnetOutput(torch.tensor(1.0), None, teacher_logits)
    student = SubnetOutput(torch.tensor(2.0, requires_grad=True), None, student_logits)
    term = recipe.subnet_loss(1, recipe.sample(0.0), student, teacher)
    term.backward()
    assert teacher_logits.grad is None  # nothing flows into the teacher through the term
    expected = (student_logits.softmax(1) - teacher_logits.softmax(1)) / 6  # soft CE, T = 1
    torch.testing.assert_close(student_logits.grad, expected.detach())
    assert student.loss.grad is None  # the label loss is replaced, not added
    assert recipe.subnet_loss(0, [], student, None) is student.loss  # largest: labels
    assert _recipe(create("resnet10_narrow", widths=[1.0, 0.5], num_classes=0),
                   distill=False).subnet_loss(1, [], student, teacher) is student.loss


def test_label_weight_adds_the_students_label_loss_to_its_distillation_term():
    recipe = _recipe(create("resnet10_narrow", widths=[1.0, 0.5], num_classes=0),
                     label_weight=0.5)
    teacher_logits = torch.tensor([[0.0, 0.0]])  # teacher: (1/2, 1/2)
    student_logits = torch.tensor([[0.0, 0.0]], requires_grad=True)
    label_loss = torch.tensor(0.7, requires_grad=True)
    term = recipe.subnet_loss(1, [], SubnetOutput(label_loss, None, student_logits),
                              SubnetOutput(torch.tensor(1.0), None, teacher_logits))
    # soft CE of (1/2, 1/2) against itself is log 2; plus 0.5 * 0.7
    torch.testing.assert_close(term, torch.tensor(0.6931472 + 0.35))
    term.backward()
    assert label_loss.grad == 0.5
    with pytest.raises(ValueError, match="label_weight"):
        _recipe(create("resnet10_narrow", widths=[1.0, 0.5], num_classes=0), label_weight=-1)


def _zero_private_norms(model, width):
    """Zero the switchable BatchNorms private to ``width``: its features become exactly 0."""
    for m in model.modules():
        if isinstance(m, _SlimBatchNorm):
            bn = m.bn[list(m.widths).index(width)]
            bn.weight.data.zero_()
            bn.bias.data.zero_()


def test_every_row_comes_from_its_own_forward_pass():
    torch.manual_seed(0)
    backbone = create("resnet10_narrow", widths=[1.0, 0.5], num_classes=0)
    classifier = SupervisedClassifier(backbone, num_classes=10).online.eval()
    test = load_dataset("synthetic", "test", 8)
    specs = backbone.family()
    before = classify_family(classifier, specs, test)
    _zero_private_norms(backbone, 0.5)
    after = classify_family(classifier, specs, test)
    assert after[specs[0]] == before[specs[0]]  # the full member is untouched
    with classifier.subnet(specs[1]):  # w0.50 now predicts its head's bias argmax everywhere
        constant = int(classifier.projector.layers[0].bias[:10].argmax())
    expected = 100.0 * float((test.labels == constant).float().mean())
    assert after[specs[1]]["top1"] == pytest.approx(expected)


def test_single_network_loads_into_every_width():
    torch.manual_seed(0)
    single = create("resnet10_narrow", widths=[1.0], num_classes=0)
    for m in single.modules():  # non-trivial statistics and affine parameters
        if isinstance(m, _SlimBatchNorm):
            for name in ("weight", "bias", "running_mean"):
                getattr(m.bn[0], name).data.normal_()
    family = create("resnet10_narrow", widths=[1.0, 0.5], num_classes=0)
    load_single_network(family, single)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(family.eval()(x), single.eval()(x))
    norm = family.bn1
    torch.testing.assert_close(norm.bn[1].weight, single.bn1.bn[0].weight[:norm.bn[1].weight.numel()])
    with pytest.raises(ValueError, match="does not fit"):
        load_single_network(create("resnet18", widths=[1.0, 0.5], num_classes=0), single)


PRETRAIN = ["pretrain", "--data", "synthetic", "--epochs", "1", "--no-eval", "--progress", "off",
            "--set", "model.arch=resnet10_narrow", "--set", "model.widths=[1.0,0.5]",
            "--set", "data.image_size=8", "--set", "data.batch_size=32",
            "--set", "method.queue_size=64", "--set", "train.device=cpu",
            "--set", "train.tensorboard=false"]


def test_cli_trains_the_family_and_merges_rows(tmp_path):
    run = tmp_path / "run"
    assert main([*PRETRAIN, "--out-dir", str(run)]) == 0
    finetune = ["finetune", str(run), "--slimmable", "--fraction", "0.1", "--epochs", "1",
                "--progress", "off"]
    assert main(finetune) == 0
    assert main([*finetune, "--init", "scratch", "--no-inplace-distill",
                 "--label-smoothing", "0.1"]) == 0
    assert main([*finetune, "--init", "scratch", "--kd-label-weight", "0"]) == 0
    rows = {r["subnet"]: r for r in read_results(run)}
    columns = {"semisup_slimmable_10pct_top1": "pretrained",
               "semisup_slimmable_scratch_nokd_10pct_top1": "scratch_nokd",
               "semisup_slimmable_scratch_kdlw0_10pct_top1": "scratch_kdlw0"}
    # independent reference: each fine-tuned family reloaded from its checkpoint, every member
    # run on the normalised test images, its argmax counted against the labels
    cfg, _ = load_pretrained(str(run))
    test = load_split(cfg.data, "test", cfg.train.seed)
    mean, std = torch.tensor(test.mean).view(1, 3, 1, 1), torch.tensor(test.std).view(1, 3, 1, 1)
    images = (test.images.float() / 255 - mean) / std
    for key, name in columns.items():
        _, method = load_pretrained(str(run / f"finetune_slimmable_{name}_10pct"))
        classifier = method.online.eval()
        for spec in classifier.backbone.family():
            with torch.no_grad(), classifier.subnet(spec):
                correct = int((classifier(images).argmax(1) == test.labels).sum())
            assert rows[spec.label][key] == pytest.approx(100 * correct / len(test.labels))
    for s in ("w1.00", "w0.50"):
        assert rows[s]["macs_g"] > 0
    table = (run / "results.md").read_text()
    for header in ("slim-FT 10% top-1", "slim-FT scratch no-KD 10% top-1",
                   "slim-FT scratch KD label-w 0 10% top-1"):
        assert header in table
    assert "kd_label_weight: 0.0" in (
        run / "finetune_slimmable_scratch_kdlw0_10pct" / "config.yaml").read_text()
    ft = run / "finetune_slimmable_pretrained_10pct"
    assert any((ft / "checkpoints").iterdir())
    labelled = json.loads((run / "subsets" / "labelled_10pct_seed0.json").read_text())
    cfg = (ft / "config.yaml").read_text()
    assert "name: supervised" in cfg and "labelled_10pct_seed0.json" in cfg
    assert labelled["count"] == 50
    assert main(finetune) == 0  # same command again: resumes the finished run, re-scores it
    with pytest.raises(SystemExit):
        main(["finetune", str(run), "--slimmable", "--init", "bogus"])
