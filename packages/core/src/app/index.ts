export { createContainer, type ServiceOverrides } from './container.js';
export { Session, type SessionOptions, type RunConfig, type ComposedRun } from './session.js';
export { appReplica, buildAppReplica, buildTaskFromConfig, type AppReplicaOptions } from './replica.js';
export {
  trainCommand,
  evaluateCommand,
  predictCommand,
  sampleCommand,
  configCommand,
  listCommand,
  type CommandOptions,
} from './commands.js';
