// What generators.json points Nx at: the built generator, or, before `npx nx build nx-plugin` has
// run, a generator that fails with that command instead of Nx's "Could not resolve ./dist/...".
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const built = join(__dirname, 'dist', 'generators', 'task', 'generator.js');
module.exports = existsSync(built)
  ? require(built)
  : {
      default: async () => {
        throw new Error(
          `@taskforge/nx-plugin is not built yet (${built} is missing): run \`npx nx build nx-plugin\` once, ` +
            'then run the generator again.',
        );
      },
    };
