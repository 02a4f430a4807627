"""DSNAS on the NAS-Bench-201 cell space, CIFAR-10.

    python main.py --mode=search --config=configs/cifar10_nb201.py --workdir=/tmp/nb201 \
        --config.data.folder=/path/to/cifar10      # offline: ImageFolder train/ test/

Why these settings:
- Data: NAS-Bench-201's protocol for weight-sharing methods searches on the 25k/25k split
  of the CIFAR-10 training set: weights train on one half, and here alpha's credit dL/dZ
  comes from a batch of the other half through the same sampled child
  (`search.alpha_data = "separate"`), so alpha is judged on images the weights did not fit.
- Weights: the benchmark's shared recipe (Dong & Yang, ICLR 2020): 50 epochs, batch 64,
  SGD momentum 0.9 (Nesterov), lr 0.025 with cosine decay (to 0 here, to 0.001 there),
  weight decay 5e-4, the weights' gradient clipped to a global L2 norm of 5 (the
  benchmark's search scripts clip every weight step so); BN eps 1e-5 as in the benchmark's
  own networks.
- alpha: DSNAS's Adam (betas 0.5 / 0.999), alpha ~ N(1, 0.01), one alpha for all
  15 cells (shared, the benchmark's definition of a cell architecture, which is what a
  genotype string names and what the tabular results index).
- Against collapse into parameter-free cells: 10 warm-up epochs train the weights with
  alpha frozen, so the credit of a convolution is measured once it has learnt something
  rather than against untrained kernels (an untrained conv loses to skip/pool, the usual
  collapse trigger). h = 0.3 early stop as in the paper.
- Taken over from the CPU protocol (configs/cifar10_nb201_cpu.py, docs/nas-bench-201.md):
  the credit baseline with the zero op's credit imputed (with the paper's estimator every
  edge but 0->3 drifts to `none` on this space) and alpha lr 5e-3.
"""

from dsnas_tf.config import default_config


def get_config():
  c = default_config()
  c.space = "nb201"
  c.data.name = "cifar10"
  c.data.num_classes = 10
  c.data.image_size = 32
  c.data.augment = "cifar"
  c.model.bn_epsilon = 1e-5
  c.model.nb201.channels = 16
  c.model.nb201.cells_per_stage = 5
  c.model.nb201.sharing = "shared"
  c.search.alpha_data = "separate"
  c.search.epochs = 50
  c.search.pretrain_epochs = 10
  c.search.batch_size = 64
  c.search.lr = 0.025
  c.search.nesterov = True
  c.search.weight_decay = 5e-4
  c.search.grad_clip_norm = 5.0
  c.search.alpha_lr = 5e-3
  c.search.credit_baseline = "moving_average"
  c.search.zero_op_credit = "baseline"
  c.search.early_stop_h = 0.3
  return c
