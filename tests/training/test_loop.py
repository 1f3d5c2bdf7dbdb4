"""Training: resume equality (epoch end and mid-epoch kill), DDP (2 CPU processes) == one process, bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import camloc
from camloc.data.cluttered import ClutteredFashionMNIST, ClutterSpec, TensorView
from camloc.distributed import epoch_indices
from camloc.errors import InputError
from camloc.models.gapnet import gapnet
from camloc.training.loop import TrainConfig, fit
from tests.fake_fashion import write_fake_fashion

torch.set_num_threads(1)
SPEC = ClutterSpec(canvas=48, scale=(0.6, 1.0))
KW = {"num_classes": 10, "final_stride": 8, "widths": [8, 8, 16], "norm": "group"}
CONFIG = {
    "architecture": "gapnet",
    "arch_kwargs": KW,
    "labels": [str(i) for i in range(10)],
    "preprocess": SPEC.preprocess(),
}


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    return write_fake_fashion(tmp_path_factory.mktemp("fm"))


@pytest.fixture(scope="module")
def data(idx_dir):
    arr = ClutteredFashionMNIST("train", 48, SPEC, idx_dir).arrays(cache_dir=None)
    return TensorView(arr)


def run_fit(data, out, epochs=2, **kw):
    torch.manual_seed(0)
    model = gapnet(**KW)
    cfg = TrainConfig(epochs=epochs, batch_size=8, lr=0.05, seed=3, checkpoint_every=kw.pop("every", 0))
    progress = fit(model, CONFIG, data, out, cfg, val=data, quiet=True, **kw)
    return model, progress


def test_ddp_sharding_covers_the_single_process_batches():
    single = epoch_indices(40, 2, 7)
    r0, r1 = epoch_indices(40, 2, 7, 0, 2), epoch_indices(40, 2, 7, 1, 2)
    for k in range(5):  # batch 8 on one process == batches of 4 on each of two
        assert sorted(single[8 * k : 8 * k + 8].tolist()) == sorted(
            r0[4 * k : 4 * k + 4].tolist() + r1[4 * k : 4 * k + 4].tolist()
        )


def test_training_learns_and_checkpoint_loads(data, tmp_path):
    model, progress = run_fit(data, tmp_path / "run", epochs=3)
    hist = progress["history"]
    assert len(hist) == 3 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    loaded = camloc.load(tmp_path / "run")
    x = data.get_batch(torch.arange(4))[0]
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x), atol=1e-6)
    with pytest.raises(InputError, match="finished run"):  # a second run into the same folder is refused
        run_fit(data, tmp_path / "run")


def test_resume_after_epoch_equals_straight_run(data, tmp_path):
    straight, _ = run_fit(data, tmp_path / "a", epochs=2)

    def kill(step):
        if step == 7:  # first step of epoch 2 (6 steps per epoch): the last checkpoint is epoch 1's end
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fit(data, tmp_path / "b", epochs=2, on_step=kill)
    state = json.loads((tmp_path / "b" / "train_state.json").read_text())
    assert state["epoch"] == 1
    resumed, progress = run_fit(data, tmp_path / "b", epochs=2, resume=True)
    assert progress["epoch"] == 2
    for k, v in straight.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k


def test_killed_mid_epoch_resumes_from_last_checkpoint(data, tmp_path):
    straight, _ = run_fit(data, tmp_path / "a", epochs=2)

    def kill(step):
        if step == 9:  # epoch 2, after its 3rd step; the last checkpoint is step 8
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fit(data, tmp_path / "b", epochs=2, every=2, on_step=kill)
    with pytest.raises(InputError, match="unfinished run"):
        run_fit(data, tmp_path / "b", epochs=2)
    state = json.loads((tmp_path / "b" / "train_state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)
    resumed, progress = run_fit(data, tmp_path / "b", epochs=2, resume=True, every=2)
    assert progress["history"][-1]["resumed_at_step"] == 2
    for k, v in straight.state_dict().items():
        assert torch.allclose(v, resumed.state_dict()[k], atol=1e-6), k


def test_resume_refuses_other_architecture_and_missing_state(data, tmp_path):
    run_fit(data, tmp_path / "a", epochs=1)
    model = gapnet(**{**KW, "widths": [8, 16, 16]})
    other = {**CONFIG, "arch_kwargs": {**KW, "widths": [8, 16, 16]}}
    with pytest.raises(InputError, match="not this model"):
        fit(model, other, data, tmp_path / "a", TrainConfig(epochs=2, batch_size=8), resume=True, quiet=True)
    with pytest.raises(InputError, match="no train_state"):
        run_fit(data, tmp_path / "empty", resume=True)
    (tmp_path / "a" / "train_state.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="damaged"):
        run_fit(data, tmp_path / "a", resume=True)
    with pytest.raises(InputError, match="damaged train_state.safetensors; delete it or choose another --out"):  # noqa: RUF043
        run_fit(data, tmp_path / "a")  # without --resume: not "start the run again", which is what the user did


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(idx_dir: Path, out: Path, batch: int) -> list[str]:
    return [
        "-m",
        "camloc",
        "train",
        "--out",
        str(out),
        "--idx-dir",
        str(idx_dir),
        "--canvas",
        "48",
        "--scale",
        "0.6,1.0",
        "--train-size",
        "32",
        "--val-size",
        "6",
        "--epochs",
        "2",
        "--batch-size",
        str(batch),
        "--widths",
        "8,8,16",
        "--norm",
        "group",
        "--threads",
        "1",
        "--quiet",
        "--device",
        "cpu",
    ]


def test_ddp_two_processes_match_one(idx_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(camloc.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, *_cli(idx_dir, tmp_path / "one", 8)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            *_cli(idx_dir, tmp_path / "two", 8),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert json.loads(ddp.stdout.strip().splitlines()[-1])["processes"] == 2
    a, b = (
        load_file(str(tmp_path / "one" / "model.safetensors")),
        load_file(str(tmp_path / "two" / "model.safetensors")),
    )
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    assert json.loads(single.stdout)["val_top1"] == json.loads(ddp.stdout.strip().splitlines()[-1])["val_top1"]


def test_cli_bad_input(idx_dir, tmp_path, capsys):
    from camloc.cli import main

    assert main(["train", "--out", str(tmp_path / "x"), "--idx-dir", str(tmp_path)]) == 2
    assert "train-images" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "x"),
                "--idx-dir",
                str(idx_dir),
                "--canvas",
                "48",
                "--scale",
                "0.6,1.0",
                "--arch",
                "alexnet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "not CAM-exact" in err and "surgery" in err and "Traceback" not in err


def test_device_names_are_checked_once_for_every_command():
    """`--device` of train, explain and probe goes through pick_device: clear errors, never a torch traceback."""
    import torch

    from camloc.distributed import pick_device
    from camloc.errors import InputError

    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="not a device"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            pick_device("cuda")
