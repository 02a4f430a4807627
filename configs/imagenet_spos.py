"""The paper's ImageNet mobile setting on the ShuffleNetV2 single-path one-shot space.

    python main.py --mode=search --config=configs/imagenet_spos.py --workdir=/tmp/spos \
        --config.data.manual_dir=/path/to/imagenet/tars

Hyper-parameters follow Hu et al. (CVPR 2020) and the authors' DSNASsearch240 setting:
batch 1024 (8 GPUs), SGD momentum 0.9, lr 0.5 with 5 linear warm-up epochs then cosine,
weight decay 4e-5 off BatchNorm, label smoothing 0.1, alpha Adam(1e-3, 0.5, 0.999) with no
decay, alpha ~ N(1, 0.01), BN eps 1e-2, early-stop threshold h = 0.3.
"""

from dsnas_tf.config import default_config


def get_config():
  c = default_config()
  c.space = "spos"
  c.data.name = "imagenet2012"
  c.data.eval_split = "validation"
  c.data.num_classes = 1000
  c.data.image_size = 224
  c.data.augment = "imagenet"
  c.data.mean = (123.675, 116.28, 103.53)
  c.data.std = (58.395, 57.12, 57.375)
  c.data.cache = False
  c.model.spos.strides = (2, 2, 2, 2, 2)
  c.model.dropout = 0.1
  c.search.epochs = 240
  c.search.batch_size = 1024
  c.search.lr = 0.5
  c.search.warmup_epochs = 5
  c.search.weight_decay = 4e-5
  c.search.label_smoothing = 0.1
  c.search.early_stop_h = 0.3
  c.eval.batch_size = 250
  return c
