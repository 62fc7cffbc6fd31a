"""Names of the metrics that one module logs and others read (the trainer logs them; the collapse
monitor, the report and the demo read them). TRL's own names are kept: ``reward``, ``reward_std``,
``kl``, ``entropy``, ``completions/mean_length``. docs/metrics.md explains every logged metric."""

#: Held-out accuracy of the policy, logged at each evaluation: greedy pass@1, sampled avg@k at the
#: held-out temperature (the paper's pass@1), maj@k, and the share of samples without an answer.
HELDOUT_GREEDY = "eval_greedy_accuracy"
HELDOUT_SAMPLED = "eval_sampled_accuracy"
HELDOUT_MAJORITY = "eval_maj_accuracy"
HELDOUT_PASS = "eval_pass_at_k"
HELDOUT_NO_ANSWER = "eval_no_answer_rate"

#: TRL's reward (the weighted sum of the reward columns) and mean completion length.
REWARD = "reward"
MEAN_LENGTH = "completions/mean_length"

#: Diagnostics of the voting rewards against the hidden references (see corewarding.core.rewards).
LABEL_ACCURACY = "label_accuracy"
ROLLOUT_ACCURACY = "rollout_accuracy"

#: Label-free signals, logged without references: the mean share of a group's rollouts in the answer
#: its label came from, the share of rollouts without an answer, and (Co-rewarding-II) the share of
#: groups whose policy majority matches the teacher's label.
MAJORITY_RATIO = "majority_ratio"
NO_ANSWER_RATE = "no_answer_rate"
TEACHER_AGREEMENT = "teacher_policy_agreement"
#: The share of rollouts whose answer is a number written in their own question: an echo of the question.
ANSWER_IN_QUESTION = "answer_in_question_share"
