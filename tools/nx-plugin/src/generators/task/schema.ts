/** Options of `nx g @taskforge/nx-plugin:task`; mirrors schema.json (Nx validates the CLI input against it). */
export interface TaskGeneratorSchema {
  /** Lower-case kebab-case, starting with a letter. */
  name: string;
  /** `new`, or the name of a registered backbone to reuse. Default `gpt2`. */
  backbone?: string;
  /** Package folder relative to the workspace root. Default `packages/task-<name>`. */
  directory?: string;
  description?: string;
  /** Skip the package manager install that links the new workspace package. */
  skipInstall?: boolean;
}
