import type { Accelerator } from '../backend/accelerator.js';
import type { Output } from '../services/tokens.js';
import type { TrainerConfig } from './config.js';
import type { ReplicaSpec } from './ddp/protocol.js';
import { DDPStrategy } from './ddp/strategy.js';
import { SingleDeviceStrategy, type Strategy } from './strategy.js';

/**
 * The strategy `trainer.strategy` / `trainer.devices` ask for. Without a replica recipe (a Trainer
 * made without the app layer and without `deps.replica`) `single` and `auto` on one device are the
 * single-device strategy, silently as before; otherwise a DDPStrategy, which resolves `auto` and
 * the device count once the backend is selected (`setup`), prints its choice, and with one device
 * is the single-device strategy. `batchSize` is the global batch size
 * (`dataset.batch_size`) when known: it caps `devices=auto` and refuses devices > batch size,
 * unless `wholeBatches` (a test/predict-only run, see `DevicesRequest.wholeBatches`).
 */
export function createStrategy(
  config: Pick<TrainerConfig, 'accelerator' | 'threads' | 'strategy' | 'devices' | 'ddp_timeout'>,
  deps: {
    accelerator: Accelerator;
    output: Output;
    replica?: ReplicaSpec | undefined;
    batchSize?: number | undefined;
    wholeBatches?: boolean | undefined;
  },
): Strategy {
  const request = { accelerator: config.accelerator, threads: config.threads };
  const oneDevice = config.devices === 'auto' || config.devices === 1;
  if (!deps.replica && config.strategy !== 'ddp' && oneDevice)
    return new SingleDeviceStrategy(request, deps.accelerator);
  return new DDPStrategy(
    {
      ...request,
      strategy: config.strategy,
      devices: config.devices,
      batchSize: deps.batchSize,
      wholeBatches: deps.wholeBatches,
      timeoutS: config.ddp_timeout,
    },
    deps.accelerator,
    deps.output,
    deps.replica,
  );
}
