"""Co-rewarding-II's EMA teacher: the cosine schedule and the in-place update."""

import math

import pytest
import torch

from corewarding.core.teacher_schedule import TeacherSchedule, ema_rate
from corewarding.training.teacher import ema_update_


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
        True, False, False, True, False, False, True
    ]
    assert schedule.rate(4, 10) == pytest.approx(ema_rate(4, 10))


@pytest.mark.parametrize("kwargs", [{"update_interval": 0}, {"rate_start": 1.5}, {"rate_end": -0.1}])
def test_schedule_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        TeacherSchedule(**kwargs)


def test_ema_rate_rejects_bad_steps():
    with pytest.raises(ValueError):
        ema_rate(0, 10)


def test_update_moves_each_parameter_by_exactly_the_rate_of_the_gap():
    torch.manual_seed(0)
    teacher, policy = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    before = [p.detach().clone() for p in teacher.parameters()]
    rate = ema_rate(1, 10)
    ema_update_(teacher, policy, rate)
    for t0, t1, p in zip(before, teacher.parameters(), policy.parameters()):
        torch.testing.assert_close(t1 - t0, rate * (p - t0))
        assert not t1.requires_grad or t1.grad is None


def test_update_with_rate_one_copies_and_rate_zero_keeps():
    teacher, policy = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    kept = [p.detach().clone() for p in teacher.parameters()]
    ema_update_(teacher, policy, 0.0)
    for k, t in zip(kept, teacher.parameters()):
        torch.testing.assert_close(t, k)
    ema_update_(teacher, policy, 1.0)
    for t, p in zip(teacher.parameters(), policy.parameters()):
        torch.testing.assert_close(t, p)


def test_update_refuses_different_architectures():
    with pytest.raises(ValueError):
        ema_update_(
            torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)), 0.1
        )
