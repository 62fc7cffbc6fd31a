"""Co-rewarding-II's EMA teacher: the cosine schedule and the in-place update."""

import math

import pytest
import torch

from corewarding.core.teacher_schedule import TeacherSchedule, ema_rate
from corewarding.training.precision import changed_share
from corewarding.training.teacher import EMATeacher, ema_update_


def test_schedule_first_middle_last():
    total = 100
    assert ema_rate(1, total) == pytest.approx(0.01)  # a_1 = a_start
    assert ema_rate(51, total) == pytest.approx(1e-5 + 0.5 * (0.01 - 1e-5))  # halfway: the mean of the two
    # a_S: (S-1)/S of the way through the cosine, just above a_end.
    expected_last = 1e-5 + 0.5 * (0.01 - 1e-5) * (1 + math.cos(math.pi * 99 / 100))
    assert ema_rate(100, total) == pytest.approx(expected_last)
    assert ema_rate(100, total) < 1e-5 + 3e-6
    assert ema_rate(500, total) == pytest.approx(1e-5)  # past the end the rate stays at a_end


def test_schedule_is_monotone_and_uses_its_endpoints():
    rates = [ema_rate(s, 30, start=0.2, end=0.001) for s in range(1, 31)]
    assert rates[0] == pytest.approx(0.2)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[-1] > 0.001


def test_schedule_update_interval():
    schedule = TeacherSchedule(update_interval=3)
    assert [schedule.rate(s, 10) is not None for s in range(1, 8)] == [
        False,
        False,
        True,
        False,
        False,
        True,
        False,
    ]
    assert schedule.rate(3, 10) == pytest.approx(ema_rate(3, 10))


def test_schedule_update_window_freezes_the_teacher_outside_it_without_shifting_the_cosine():
    frozen_first = TeacherSchedule(first_step=4)
    assert [frozen_first.rate(s, 10) for s in range(1, 4)] == [None] * 3
    assert frozen_first.rate(4, 10) == pytest.approx(ema_rate(4, 10))  # a_4, not a_1
    frozen_after = TeacherSchedule(last_step=3)
    assert [frozen_after.rate(s, 10) is not None for s in range(1, 7)] == [True] * 3 + [False] * 3


@pytest.mark.parametrize(
    "kwargs",
    [{"update_interval": 0}, {"rate_start": 1.5}, {"rate_end": -0.1}, {"first_step": 0},
     {"first_step": 5, "last_step": 4}],
)
def test_schedule_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        TeacherSchedule(**kwargs)


def test_ema_rate_rejects_bad_steps():
    with pytest.raises(ValueError):
        ema_rate(0, 10)


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.data for p in module.parameters()]


def test_update_moves_each_parameter_by_exactly_the_rate_of_the_gap():
    torch.manual_seed(0)
    teacher, policy = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    before = [p.detach().clone() for p in teacher.parameters()]
    rate = ema_rate(1, 10)
    ema_update_(params(teacher), params(policy), rate)
    for t0, t1, p in zip(before, teacher.parameters(), policy.parameters()):
        torch.testing.assert_close(t1 - t0, rate * (p - t0))
        assert not t1.requires_grad or t1.grad is None


def test_update_with_rate_one_copies_and_rate_zero_keeps():
    teacher, policy = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    kept = [p.detach().clone() for p in teacher.parameters()]
    ema_update_(params(teacher), params(policy), 0.0)
    for k, t in zip(kept, teacher.parameters()):
        torch.testing.assert_close(t, k)
    ema_update_(params(teacher), params(policy), 1.0)
    for t, p in zip(teacher.parameters(), policy.parameters()):
        torch.testing.assert_close(t, p)


def test_update_refuses_different_architectures():
    with pytest.raises(ValueError, match="numbers of parameters"):
        ema_update_(
            params(torch.nn.Linear(2, 2)),
            params(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))),
            0.1,
        )
    with pytest.raises(ValueError, match="shape"):
        ema_update_(params(torch.nn.Linear(2, 2)), params(torch.nn.Linear(2, 3)), 0.1)


class OneProcess:
    """What EMATeacher asks of accelerate's Accelerator, for one process without wrapping."""

    process_index, num_processes, is_main_process = 0, 1, True

    @staticmethod
    def unwrap_model(model):
        return model


def drifting_policy(steps: int, seed: int = 0) -> list[list[torch.Tensor]]:
    """The policy's weights at the start and after each of ``steps`` optimizer steps: AdamW-sized moves
    (1e-4, a random sign) on weights of a typical scale (0.02)."""
    generator = torch.Generator().manual_seed(seed)
    weights = [torch.randn(64, 32, generator=generator) * 0.02, torch.randn(64, generator=generator) * 0.02]
    history = [weights]
    for _ in range(steps):
        weights = [w + 1e-4 * torch.randn(w.shape, generator=generator).sign() for w in weights]
        history.append(weights)
    return history


def linear_with(weights: list[torch.Tensor], dtype: torch.dtype) -> torch.nn.Linear:
    module = torch.nn.Linear(32, 64).to(dtype)
    with torch.no_grad():
        module.weight.copy_(weights[0])
        module.bias.copy_(weights[1])
    return module


@pytest.mark.parametrize("rate", [0.01, 1e-5])
def test_a_bfloat16_teacher_follows_the_float32_closed_form(rate):
    """The average is taken in float32 whatever the module's dtype: after 100 updates a bfloat16 teacher's
    master equals the float32 recursion from its (bfloat16) start, and its module holds that rounded to
    bfloat16. Averaged in bfloat16 itself (the former update) most weights never move at these rates."""
    initial, *history = drifting_policy(100)
    teacher = EMATeacher(linear_with(initial, torch.bfloat16), TeacherSchedule(rate, rate), OneProcess())
    expected = [w.to(torch.bfloat16).float() for w in initial]
    naive = [w.to(torch.bfloat16) for w in initial]
    for step, weights in enumerate(history, start=1):
        assert teacher.update(linear_with(weights, torch.float32), step, len(history)) == pytest.approx(rate)
        expected = [e + rate * (w - e) for e, w in zip(expected, weights)]
        ema_update_(naive, weights, rate)
    start = [w.to(torch.bfloat16).float() for w in initial]
    for master, module_param, closed_form in zip(teacher.master, teacher.module.parameters(), expected):
        assert master.dtype == torch.float32
        torch.testing.assert_close(master, closed_form, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(module_param.data, closed_form.to(torch.bfloat16), rtol=0, atol=0)
    assert changed_share(start, teacher.master) > 0.99
    assert changed_share([w.to(torch.bfloat16) for w in initial], naive) < 0.25  # small weights only


def test_a_float32_teacher_is_its_own_master():
    teacher = EMATeacher(torch.nn.Linear(3, 2), TeacherSchedule(), OneProcess())
    assert all(
        m is p.data or m.data_ptr() == p.data_ptr()
        for m, p in zip(teacher.master, teacher.module.parameters())
    )


def test_teacher_save_and_load_round_trip_the_float32_master(tmp_path):
    history = drifting_policy(3)
    teacher = EMATeacher(linear_with(history[0], torch.bfloat16), TeacherSchedule(0.3, 0.3), OneProcess())
    teacher.update(linear_with(history[2], torch.float32), 1, 3)
    teacher.save(tmp_path)
    restored = EMATeacher(linear_with(history[0], torch.bfloat16), TeacherSchedule(0.3, 0.3), OneProcess())
    restored.load(tmp_path)
    assert restored.last_update_step == 1
    for a, b in zip(restored.master, teacher.master):
        assert torch.equal(a, b)
    for a, b in zip(restored.module.parameters(), teacher.module.parameters()):
        assert torch.equal(a, b)


def test_a_teacher_cast_by_its_engine_starts_from_the_float32_weights_before_the_cast():
    """DeepSpeed ZeRO-2 in bf16 casts the teacher's copy to bfloat16: its float32 master starts from the
    initial float32 weights handed over, not from their bf16 rounding (|T1 − θ0| was |bf16(θ0) − θ0|)."""
    initial, later = drifting_policy(1)
    teacher = EMATeacher(
        linear_with(initial, torch.bfloat16), TeacherSchedule(0.25, 0.25), OneProcess(), initial=initial
    )
    for master, weights in zip(teacher.master, initial):
        assert master.dtype == torch.float32 and torch.equal(master, weights)
        assert master.data_ptr() != weights.data_ptr()  # a copy: the caller's tensors stay its own
    assert any(not torch.equal(w.to(torch.bfloat16).float(), w) for w in initial)  # the cast rounds
    teacher.update(linear_with(later, torch.float32), 1, 1)
    for master, start, weights in zip(teacher.master, initial, later):
        torch.testing.assert_close(master, start + 0.25 * (weights - start), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="differ in shape"):
        EMATeacher(
            linear_with(initial, torch.bfloat16), TeacherSchedule(), OneProcess(), initial=initial[::-1]
        )


def test_the_full_teacher_is_put_together_from_per_process_pieces(tmp_path):
    """ZeRO-3 saves each process's flat partition (padded at the end), FSDP2 its rows: in rank order and
    cut to size, the pieces are the full tensors."""
    from safetensors.torch import save_file

    from corewarding.training.teacher import gathered_teacher

    full = {"w": torch.arange(15.0).reshape(5, 3), "b": torch.arange(3.0)}
    zero3 = [{"w": torch.arange(8.0), "b": torch.tensor([0.0, 1.0])},
             {"w": torch.cat([torch.arange(8.0, 15.0), torch.zeros(1)]), "b": torch.tensor([2.0, 0.0])}]
    for rank, piece in enumerate(zero3):
        save_file(piece, tmp_path / f"teacher-{rank:05d}-of-00002.safetensors")
    rows = tmp_path / "fsdp2"
    rows.mkdir()
    fsdp2 = [{"w": full["w"][:3], "b": full["b"][:2]}, {"w": full["w"][3:], "b": full["b"][2:]}]
    for rank, piece in enumerate(fsdp2):
        save_file(piece, rows / f"teacher-{rank:05d}-of-00002.safetensors")
    shapes = {name: t.shape for name, t in full.items()}
    for folder in (tmp_path, rows):
        gathered = gathered_teacher(folder, shapes)
        assert all(torch.equal(gathered[name], full[name]) for name in full)
