import type { DataModule, Stage } from '../contracts.js';

const setUp = new WeakMap<DataModule, Set<Stage>>();

/**
 * `prepareData()` then `setup(stage)`, once per data module and stage (Lightning's
 * `_has_setup_<stage>` guard). The app layer sets data up before the Trainer to read
 * `modelDataArgs` for building the model; the Trainer then does not repeat it.
 */
export async function prepareAndSetup(datamodule: DataModule, stage: Stage): Promise<void> {
  const stages = setUp.get(datamodule) ?? new Set<Stage>();
  if (stages.has(stage)) return;
  await datamodule.prepareData();
  await datamodule.setup(stage);
  stages.add(stage);
  setUp.set(datamodule, stages);
}

/** `teardown()`, and forget the stages set up, so a later fit or test sets the data up again. */
export async function teardownData(datamodule: DataModule): Promise<void> {
  setUp.delete(datamodule);
  await datamodule.teardown?.();
}
