"""A seconds-long search for tests: four blocks, narrow widths, a handful of steps.

    python main.py --mode=search --config=configs/tiny.py --workdir=/tmp/tiny \
        --config.data.folder=/path/to/cifar10
"""

from dsnas_tf.config import default_config


def get_config():
  c = default_config()
  c.space = "spos"
  c.data.num_classes = 10
  c.data.image_size = 32
  c.data.max_train_images = 512
  c.data.max_eval_images = 256
  c.data.shuffle_buffer = 512
  c.model.spos.stem_channels = 8
  c.model.spos.stage_channels = (16, 24, 32, 48)
  c.model.spos.stage_repeats = (1, 1, 1, 1)
  c.model.spos.last_channels = 64
  c.model.spos.strides = (1, 2, 2, 2, 1)
  c.search.epochs = 2
  c.search.batch_size = 32
  c.search.lr = 0.05
  c.search.alpha_lr = 0.05
  c.search.log_every_steps = 4
  c.eval.batch_size = 128
  return c
