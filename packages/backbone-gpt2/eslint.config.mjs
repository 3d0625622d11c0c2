import baseConfig from '../../eslint.config.mjs';

// assembly/ is AssemblyScript (i32, v128, @inline on functions): compiled by asc, not TypeScript.
export default [...baseConfig, { ignores: ['assembly/**', 'wasm/**'] }];
