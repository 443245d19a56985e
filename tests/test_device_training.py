"""Training at scale: the fused LIF time loop, --device, chunked Fisher scores, out-of-memory
errors, data-parallel fits under torchrun (gloo on CPUs) and ``spikefit bench train``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spikefit import devices, fsc
from spikefit.errors import DeviceError, TrainingError
from spikefit.lifscan import lif_scan
from spikefit.nn import LIF, SNN, Conv, Flatten, Linear, Pool, Probe

from clitools import assert_one_line_error, invoke

CASES = [  # du, dv, vth, bias, shape
    (1.0, 0.125, 1.0, False, (24,)),
    (0.25, 0.0, 1.3, True, (16,)),
    (0.5, 0.5, 0.7, True, (3, 5, 5)),
    (1.0, 0.0, 2.0, False, (8,)),
]


@pytest.mark.parametrize("du,dv,vth,bias,shape", CASES)
def test_the_fused_time_loop_gives_the_step_loops_spikes_and_gradients(du, dv, vth, bias, shape):
    g = torch.Generator().manual_seed(1)
    lif = LIF("l", shape, du, dv, vth, bias=bias)
    if bias:
        with torch.no_grad():
            lif.bias.copy_(torch.randn(shape, generator=g) * 0.2)
    a = (torch.randn(30, 6, *shape, generator=g) * 1.5 * vth).requires_grad_()
    up = torch.randn(30, 6, *shape, generator=g)

    def run(forward):
        a.grad = None
        if bias:
            lif.bias.grad = None
        probe = Probe()
        s = forward(a, probe)
        (s * up).sum().backward()
        mask_grad = torch.autograd.grad((forward(a, Probe()) * up).sum(), a)[0]  # graph re-built: same again
        return s.detach(), a.grad.clone(), None if not bias else lif.bias.grad.clone(), mask_grad

    s1, ga1, gb1, _ = run(lif._step_forward)
    s2, ga2, gb2, _ = run(lif._scan_forward)
    assert 0.02 < float(s1.mean()) < 0.6          # the case spikes, and not always
    assert torch.equal(s1, s2)                     # spikes bit for bit
    assert torch.allclose(ga1, ga2, rtol=1e-5, atol=1e-6)
    if bias:
        assert torch.allclose(gb1, gb2, rtol=1e-5, atol=1e-5)


def test_the_fisher_mask_of_a_fused_population_gets_the_step_loops_gradient():
    lif = LIF("l", (12,), 1.0, 0.25, 1.0)
    a = torch.randn(20, 5, 12, generator=torch.Generator().manual_seed(2)) * 1.5
    grads = []
    for forward in (lif._step_forward, lif._scan_forward):
        probe = Probe()
        out = forward(a, probe)
        (out.sum(0) ** 2).sum().backward()
        grads.append(probe.masks["l"].grad)
    assert torch.allclose(grads[0], grads[1]) and grads[0].abs().sum() > 0


def test_a_population_with_recurrence_still_steps_and_one_without_takes_the_fused_loop(monkeypatch):
    calls = []
    import spikefit.nn as nnmod

    monkeypatch.setattr(nnmod, "lif_scan", lambda *a: calls.append(1) or torch.zeros_like(a[0]))
    model = SNN.mlp(10, [8], 3, recurrent=True, seed=0)
    model(torch.ones(4, 2, 10))
    assert len(calls) == 1                         # the output population; the recurrent one stepped


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible: the Triton LIF kernels run only on CUDA")
def test_the_triton_kernels_match_the_cpu_loop_on_a_gpu():
    from spikefit.lifscan import triton_available

    assert triton_available(), "a GPU is visible but Triton cannot load"
    g = torch.Generator().manual_seed(3)
    for du, dv, vth, bias, shape in CASES:
        b = torch.randn(shape, generator=g) * 0.2 if bias else None
        a = torch.randn(40, 7, *shape, generator=g) * 1.5 * vth
        up = torch.randn(40, 7, *shape, generator=g)
        out = []
        for dev in ("cpu", "cuda"):
            x = a.detach().to(dev).clone().requires_grad_()
            bb = None if b is None else b.detach().to(dev).clone().requires_grad_()
            s = lif_scan(x, bb, du, dv, vth, 5.0)
            (s * up.to(dev)).sum().backward()
            out.append((s.cpu(), x.grad.cpu(), None if bb is None else bb.grad.cpu()))
        assert torch.equal(out[0][0], out[1][0])
        assert torch.allclose(out[0][1], out[1][1], rtol=1e-4, atol=1e-5)
        if bias:
            assert torch.allclose(out[0][2], out[1][2], rtol=1e-4, atol=1e-4)
    from spikefit.quantizers import pick_levels

    levels = torch.tensor([-0.5, -0.1, 0.0, 0.2, 0.6])
    idx = torch.randint(0, 5, (300, 40), generator=g)
    up = torch.randn(300, 40, generator=g)
    grads = []
    for dev in ("cpu", "cuda"):
        lv = levels.detach().clone().to(dev).requires_grad_()
        (pick_levels(lv, idx.to(dev)) * up.to(dev)).sum().backward()
        grads.append(lv.grad.cpu())
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-4)


def _quantizer(M, zero, bits, seed):
    from spikefit.quantizers import Codebook, CodebookQuantizer

    rng = np.random.default_rng(seed)
    centers = np.sort(rng.normal(0, 0.1, (1, M)), axis=1)
    centers[0, 0] = 0.001                     # rounds onto 0: moved away from zero
    if M > 2:
        centers[0, 2] = centers[0, 1] + 1e-4  # two centres on one integer: tied levels
    cb = Codebook(centers, 1 / 64 if bits else None, bits)
    return CodebookQuantizer(cb, np.zeros(300, dtype=np.int64), "layer", zero=zero)


def test_tied_codebook_levels_send_their_gradient_to_the_lowest_index():
    q = _quantizer(4, True, 8, 0)
    assert q.codebook.integers().detach()[0].tolist() == [1, 1, 1, 4]   # 0.001 and two close centres tie on 1
    w = q.codebook.values().detach()[0, 2].repeat(300, 5).requires_grad_()
    q(w).sum().backward()
    assert q.codebook.centers.grad[0].tolist() == [1500.0, 0.0, 0.0, 0.0]   # as the GPU kernel breaks the tie


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible: the Triton quantizer runs only on CUDA")
def test_the_triton_hard_quantizer_matches_the_torch_path_on_a_gpu(monkeypatch):
    from spikefit.quantizers import fused_hard

    assert fused_hard(torch.zeros(1, device="cuda"), 5), "a GPU is visible but the Triton quantizer cannot load"
    import spikefit.quant_triton as QT

    g = torch.Generator().manual_seed(4)
    cases = [(4, True, 8), (4, False, 8), (7, True, 4), (16, True, 8), (3, True, None), (1, True, 8), (31, True, 8)]
    for (M, zero, bits), single in zip(cases, [QT.SINGLE, 100] * 4):   # one program, or partial sums
        monkeypatch.setattr(QT, "SINGLE", single)
        w = torch.randn(300, 37, generator=g) * 0.1
        up = torch.randn(300, 37, generator=g)
        out = []
        for dev in ("cpu", "cuda"):
            q = _quantizer(M, zero, bits, M).to(dev)
            x = w.clone().to(dev).requires_grad_()
            y = q(x)
            (y * up.to(dev)).sum().backward()
            out.append((y.detach().cpu(), x.grad.cpu(), q.codebook.centers.grad.cpu()))
        assert torch.equal(out[0][0], out[1][0])           # the same level for every weight, bit for bit
        assert torch.equal(out[0][1], out[1][1])           # straight through
        assert torch.allclose(out[0][2], out[1][2], rtol=1e-4, atol=1e-3)


# -- devices ---------------------------------------------------------------------------------------

def test_the_python_api_takes_device_and_refuses_one_that_is_not_visible(tmp_path):
    from spikefit import fit

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(DeviceError, match=rf"--device 'cuda:{n}' is not visible here"):
        fit(None, "digits", "loihi2", device=f"cuda:{n}", out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_devices_resolve_names_and_refuse_what_is_not_visible():
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(DeviceError, match=rf"--device 'cuda:{n + 2}' is not visible here \(visible: cpu"):
        devices.resolve(f"cuda:{n + 2}")
    with pytest.raises(DeviceError, match=r"--device 'tpu' is not a device; use auto, cpu, cuda or cuda:N"):
        devices.resolve("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: --device cuda is valid here")
def test_fit_on_a_gpu_that_is_not_there_is_exit_2_naming_the_visible_devices(tmp_path):
    r = invoke("fit", "--device", "cuda", "--target", "loihi2", "--dataset", "digits", "--out", tmp_path / "o")
    assert_one_line_error(r, r"^Error: --device 'cuda' is not visible here \(visible: cpu\); use --device auto or "
                             r"one of those$")
    assert not (tmp_path / "o").exists()


# -- Fisher scores in chunks -------------------------------------------------------------------------

def test_fisher_scores_in_chunks_of_a_few_samples_equal_the_whole_batch(monkeypatch):
    g = torch.Generator().manual_seed(0)
    conv = SNN([Conv("c1", (2, 6, 6), 3, 3, padding=1, generator=g, gain=3), LIF("l1", (3, 6, 6)),
                Pool("p", "sum", 2, (3, 6, 6)), Flatten("f", (3, 3, 3)), Linear("fc", 27, 4, generator=g, gain=3),
                LIF("l2", (4,))], (2, 6, 6))
    mlp = SNN.mlp(12, [10], 4, recurrent=True, seed=1, gain=2.0)
    for model, shape in ((conv, (2, 6, 6)), (mlp, (12,))):
        x = (torch.rand(8, 20, *shape, generator=g) < 0.4).float()
        y = torch.randint(0, 4, (20,), generator=g)
        whole = fsc.fisher_scores(model, x, y, 1.0, batch_size=20)
        monkeypatch.setattr(fsc, "PER_SAMPLE_ELEMENTS", 1)       # one sample at a time
        chunked = fsc.fisher_scores(model, x, y, 1.0, batch_size=20)
        monkeypatch.undo()
        for a, b in zip(whole, chunked):
            for k in a:
                assert np.allclose(a[k], b[k], rtol=1e-5, atol=1e-12), k
        assert any(np.isfinite(v).any() and v[np.isfinite(v)].sum() > 0 for v in whole[1].values())


# -- out of memory -----------------------------------------------------------------------------------

def test_out_of_memory_is_one_line_naming_the_batch_size_and_the_checkpoint_stays_resumable(tmp_path, monkeypatch):
    from spikefit.trainer import FitConfig, fit
    from spikefit.training.checkpoint import load_checkpoint

    cfg = FitConfig.preset("demo", warmup_epochs=2, cat_epochs=1, prune_rounds=1, prune_epochs=1, finetune_epochs=1,
                           train_limit=256, test_limit=64, device="cpu", batch_size=32)
    real = SNN.forward
    calls = {"n": 0}

    def forward(self, x, probe=None):
        calls["n"] += 1
        if calls["n"] == 12 and self.training:   # in the second epoch (8 steps an epoch)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, x, probe)

    monkeypatch.setattr(SNN, "forward", forward)
    with pytest.raises(DeviceError, match=r"^out of memory on cpu at batch size 32 \(CUDA out of memory\. Tried to "
                                          r"allocate 2\.00 GiB\); pass a smaller --batch-size, e\.g\. 16; the checkpoint "
                                          r"of the last finished epoch is intact$"):
        fit(None, "digits", "loihi2", cfg, out=tmp_path / "o", progress=False)
    ck = load_checkpoint(tmp_path / "o" / "checkpoint.pt")
    assert ck["state"]["global_epoch"] == 1
    monkeypatch.setattr(SNN, "forward", real)
    result = fit(None, "digits", "loihi2", cfg, out=tmp_path / "o", resume=True, progress=False)
    assert result.accuracy["fitted"] > 0.5


# -- data-parallel fits ----------------------------------------------------------------------------

def _torchrun(n: int, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SPIKEFIT_LOAD_PLUGINS": os.environ.get("SPIKEFIT_LOAD_PLUGINS", "")}
    env.pop("SPIKEFIT_LOAD_PLUGINS") if not env["SPIKEFIT_LOAD_PLUGINS"] else None
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                           "-m", "spikefit", *args], capture_output=True, text=True, env=env, timeout=300)


FIT = ["fit", "--target", "loihi2", "--dataset", "digits", "--device", "cpu", "--epochs", "3,1,1,1", "--quiet",
       "--json"]


def test_two_gloo_processes_fit_once_and_resume_on_one(tmp_path):
    from spikefit.trainer import FitConfig, fit
    from spikefit.training.checkpoint import load_checkpoint

    r = _torchrun(2, [*FIT, "--out", str(tmp_path / "ddp")])
    assert r.returncode == 0, r.stderr[-2000:]
    docs = json.loads(r.stdout)                                   # rank 0 alone reports
    assert docs["exit_code"] == 0
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["checkpoint.pt", "model.nir", "report.json",
                                                                    "report.md"]
    two = docs["accuracy"]["fitted"]
    # the same fit in one process: the same steps (the global batch is split), so close accuracy
    cfg = FitConfig(warmup_epochs=3, cat_epochs=1, prune_epochs=1, finetune_epochs=1, device="cpu")
    one = fit(None, "digits", "loihi2", cfg, out=tmp_path / "one", progress=False).accuracy["fitted"]
    assert abs(one - two) <= 0.03
    ck = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")   # written by rank 0, no process count in it
    assert ck["config"]["batch_size"] == 64 and ck["state"]["global_epoch"] >= 5 and "world" not in json.dumps(
        ck["config"])


def test_a_one_process_checkpoint_resumes_on_two_processes(tmp_path):
    from spikefit.trainer import FitConfig, fit

    cfg = FitConfig(warmup_epochs=3, cat_epochs=1, prune_epochs=1, finetune_epochs=1, device="cpu")

    def stop(info):
        if info["stage"] == "warmup" and info["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(None, "digits", "loihi2", cfg, out=tmp_path / "o", callbacks=[stop], progress=False)
    r = _torchrun(2, [*FIT, "--out", str(tmp_path / "o"), "--resume"])
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["ok"] is True
    assert [h["stage"] for h in report["stages"]][:2] == ["warmup", "prune1"] and report["stages"][0]["epochs"] == 3


# -- bench train -----------------------------------------------------------------------------------

def test_bench_train_times_spikefit_beside_snntorch_and_checks_nothing_it_did_not_measure():
    r = invoke("bench", "train", "--device", "cpu", "--workloads", "mlp-32,lif-64", "--reps", "1", "--warmup", "0",
               "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    got = {(row["workload"], row["impl"]) for row in rep["rows"]}
    assert {("mlp-32", "spikefit-float"), ("mlp-32", "spikefit-cat"), ("mlp-32", "spikefit-cat-fsc"),
            ("mlp-32", "snntorch-float"), ("mlp-32", "fsc-fisher"), ("lif-64", "spikefit-float")} <= got
    assert all(row["samples_per_s"] > 0 for row in rep["rows"])
    assert rep["targets"] == []                     # GPU targets need a GPU row
    assert rep["command"].startswith("spikefit bench train --device cpu --workloads mlp-32,lif-64")


def test_bench_train_writes_its_rows_after_every_workload(tmp_path, monkeypatch):
    import spikefit.bench.train as BT

    real = BT.measure

    def stopped_at_the_second(workloads, *a, **k):
        if workloads[0].name == "lif-64":
            raise KeyboardInterrupt   # a run killed by its time limit
        return real(workloads, *a, **k)

    monkeypatch.setattr(BT, "measure", stopped_at_the_second)
    invoke("bench", "train", "--device", "cpu", "--workloads", "mlp-32,lif-64", "--reps", "1", "--warmup", "0",
           "--impls", "spikefit-float", "--out", str(tmp_path))
    rep = json.loads((tmp_path / "train.json").read_text())
    assert rep["partial"] and [(r["workload"], r["impl"]) for r in rep["rows"]] == [("mlp-32", "spikefit-float"),
                                                                                   ("mlp-32", "fsc-fisher")]
    assert "Partial: the run has not finished" in (tmp_path / "train.md").read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_bench_train_refuses_an_unknown_workload_in_one_line():
    r = invoke("bench", "train", "--workloads", "mlp-x")
    assert_one_line_error(r, r"^Error: workload 'mlp-x' is not one of mlp-WIDTH, lif-N, conv, conv-SIZE \(e\.g\. ")


def test_event_digits_are_on_off_frames_of_moving_digits():
    from spikefit.bench.ddp_fit import event_digits

    ds = event_digits(16, 6, limit=40)
    assert ds.layout == "sequence" and ds.x_train.shape == (40, 6, 2, 16, 16) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape[0] == 360 and set(np.unique(ds.x_train)) <= {0, 1}
    rate = ds.x_train.mean()
    assert 0.01 < rate < 0.3                        # edges of moving strokes, not the whole frame
    assert ds.x_train[:, :, 0].sum() > 0 and ds.x_train[:, :, 1].sum() > 0   # ON and OFF events


# -- mixed precision -------------------------------------------------------------------------------

def test_a_codebook_network_on_spikes_computes_the_same_in_bfloat16():
    from spikefit import cat as C
    from spikefit.training.loop import autocast

    model = SNN.mlp(30, [40], 5, dv=0.125, seed=3)
    C.attach_cat(model, C.CatSpec(4, "layer", 8, "layer", "hard", True))
    C.harden(model)
    x = (torch.rand(12, 16, 30, generator=torch.Generator().manual_seed(5)) < 0.3).float()
    ref = model(x)
    with autocast(torch.device("cpu"), "bf16"):
        low = model(x)
    assert low.dtype == torch.float32 and torch.equal(ref, low)   # codebook values and spikes are exact in bf16


def test_bf16_training_steps_learn_like_float32_and_bad_precision_is_one_line():
    from spikefit.baselines import run_method
    from spikefit.training.config import FitConfig

    cfg = dict(train_limit=256, test_limit=120, warmup_epochs=4, cat_epochs=0, prune_rounds=0, finetune_epochs=0,
               device="cpu", deploy=False, threads=1)
    full = run_method("float", "digits", None, 0.0, 0, FitConfig(**cfg))
    low = run_method("float", "digits", None, 0.0, 0, FitConfig(**cfg, precision="bf16"))
    assert full["accuracy"] > 0.5 and abs(full["accuracy"] - low["accuracy"]) < 0.1
    with pytest.raises(TrainingError, match=r"^unknown precision 'fp16'; use one of fp32, bf16$"):
        FitConfig(precision="fp16")
    r = invoke("fit", "--target", "loihi2", "--dataset", "digits", "--precision", "fp16")
    assert r.exit_code == 2 and "'fp16' is not one of 'fp32', 'bf16'" in r.output
