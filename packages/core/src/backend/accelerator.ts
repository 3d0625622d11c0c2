import { inject, injectable } from 'tsyringe';
import { type Output, Tokens } from '../services/tokens.js';
import { type AcceleratorRequest, type BackendSelection, selectBackend, type SelectBackendOptions } from './select.js';

/**
 * The injectable face of `selectBackend`: register it for `Tokens.Accelerator`
 * (`container.register(Tokens.Accelerator, { useClass: Accelerator })`); it reports through the
 * container's Output and remembers what it chose.
 */
@injectable()
export class Accelerator {
  /** The last selection, once `select` has run. */
  selection: BackendSelection | undefined;

  constructor(@inject(Tokens.Output) private readonly output: Output) {}

  async select(
    request: AcceleratorRequest,
    options: Omit<SelectBackendOptions, 'output'> = {},
  ): Promise<BackendSelection> {
    this.selection = await selectBackend(request, { ...options, output: this.output });
    return this.selection;
  }
}
