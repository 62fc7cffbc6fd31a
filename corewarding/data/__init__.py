"""Datasets: the problem record, readers for the common formats, the synthetic task, rephrasing pairs."""

from corewarding.data.records import Problem

__all__ = ["Problem"]
