"""The ShuffleNetV2 single-path one-shot space at CIFAR scale.

    python main.py --mode=search --config=configs/cifar10_spos.py --workdir=/tmp/c10 \
        --config.data.folder=/path/to/cifar10      # offline: ImageFolder train/ test/

The stem and the first stage keep full resolution (strides 1, 1, 2, 2, 2), so the four
stages see 32, 16, 8 and 4 pixels. `model.spos.width_multiplier` scales every width; the
default 0.5 keeps a CPU search practical. Same optimiser recipe as the ImageNet setting
except the learning rate: 0.05 at batch 128 (the paper's 0.5 at 1024, scaled linearly,
rounded down), no warm-up, no label smoothing. A weight-sharing supernet of 20 blocks is far
less tolerant of a large lr than a single child: on this space, lr 0.2 at batch 128 left the
supernet's loss flat at 2.30 over 100 steps, while the fixed child learned (loss 1.82).
"""

from dsnas_tf.config import default_config


def get_config():
  c = default_config()
  c.space = "spos"
  c.data.name = "cifar10"
  c.data.num_classes = 10
  c.data.image_size = 32
  c.data.augment = "cifar"
  c.model.spos.strides = (1, 1, 2, 2, 2)
  c.model.spos.width_multiplier = 0.5
  c.search.epochs = 30
  c.search.batch_size = 128
  c.search.lr = 0.05
  c.search.warmup_epochs = 0
  c.search.weight_decay = 4e-5
  c.search.early_stop_h = 0.3
  return c
