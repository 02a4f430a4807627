"""DSNAS on NAS-Bench-201, sized so that a complete search fits a 2-core CPU.

    python main.py --mode=search --config=configs/cifar10_nb201_cpu.py --workdir=/tmp/nb201 \
        --config.data.folder=~/.cache/dsnas-tf/cifar10
    python main.py --mode=rank --workdir=/tmp/nb201 --table=../shared/nb201/cifar10_valid12.csv
    python benchmarks/nb201_search.py --table ../shared/nb201/cifar10_valid12.csv --seeds 0,1,2

One run does all of it: weights-only warm-up with uniformly sampled cells, the DSNAS
search with progressive early stop, the fixed cell's own training to the end of the epoch
budget, and the final test evaluation. Results and the measurements behind each choice
are in docs/nas-bench-201.md.

Why these settings (on top of configs/cifar10_nb201.py, whose data split and weight recipe
are kept: 25k/25k split with alpha's credit from the held-out half, SGD with Nesterov
momentum, weight decay 5e-4, batch 64, cosine lr from 0.025):
- Space: 16 channels as the benchmark, 1 cell per stage (3 cells, not 15). The epoch
  time bounds the search here: a weights-only epoch of 25k images takes about 30 s, a
  search epoch (weights plus alpha's held-out batch) about 40 s, so a seed's whole run
  took 21-24 minutes with `distribute.determinism=off`; deterministic (op determinism
  and one inter-op thread, grappler on) weights-only epochs take 40-45 s and a seed took
  31.2-31.5 minutes on idle cores (seed 2 on two machines, docs/nas-bench-201.md): over
  the 30-minute budget. Deeper and thinner
  (8 channels, 3 cells per stage) learnt far slower (23% vs 43% training accuracy of the
  sampled children after 7 weights-only epochs) and did not change which ops the credit
  favours.
- Epochs: 30, of which 10 weights-only: by then the sampled children train at about 49%
  and their ranking by the supernet agrees with the table at Kendall tau 0.23-0.29 (64
  cells, three seeds with `distribute.determinism=off`; 0.452, 0.339 and 0.428 for seeds
  0, 1 and 2 deterministic, grappler on); every edge is fixed by epoch 20, and the last 10
  epochs train the found cell alone (its test top-1 at the end is the run's own
  deployable child).
- alpha: Adam with lr 5e-3 (the paper's 1e-3 moved softmax(alpha) by about 0.01 per
  epoch here: no edge would reach the early-stop gap within the budget), betas as the paper.
- credit_baseline = "moving_average" and zero_op_credit = "baseline": see the ablation in
  docs/nas-bench-201.md. With the paper's estimator every edge but 0->3 drifts to `none`:
  BatchNorm after every op makes the network's output invariant to the scale of a node, so
  the credits of the edges into a node sum to about zero and all but the strongest edge
  get a positive credit, while `none`, whose credit is identically 0, wins by default.
- h = 0.3 as in the paper.
"""

import os

from dsnas_tf.config import load_config_file


def get_config():
  c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "cifar10_nb201.py"))
  c.model.nb201.cells_per_stage = 1
  c.search.epochs = 30
  c.search.pretrain_epochs = 10
  return c
