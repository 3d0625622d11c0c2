import { Tokens, type ComponentSpec, type Output, type Paths } from '@taskforge/core';
import { cifar10Schema, type Cifar10Config } from './config.js';
import { Cifar10DataModule } from './datamodule.js';

/** `_target_: datamodule/cifar10`. */
export const cifar10Spec: ComponentSpec<'datamodule', Cifar10Config> = {
  kind: 'datamodule',
  name: 'cifar10',
  description:
    'CIFAR-10 (60k 32×32 images, 10 classes, optionally downsampled to 16/8/4) ' +
    'as k-means palette token sequences, with download, cache and augmentation.',
  schema: cifar10Schema,
  create(config, { container }) {
    return new Cifar10DataModule(
      config,
      container.resolve<Paths>(Tokens.Paths),
      container.resolve<Output>(Tokens.Output),
    );
  },
};
