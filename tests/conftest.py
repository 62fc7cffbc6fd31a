"""Test-session settings."""

import torch

# One torch thread: the models under test are tiny, and on a 2-core machine shared with other processes
# two threads made their training and generation up to ten times slower (the threads wait on each other).
torch.set_num_threads(1)
