// esbuild plugins for serverless-esbuild (custom.esbuild.plugins in serverless.yml). Plain CommonJS:
// serverless-esbuild require()s this file before any TypeScript tooling runs.
const fs = require('node:fs');
const path = require('node:path');

// zod 4 (classic) hangs ~50 locales and its JSON Schema converters off the `z` namespace, so esbuild
// cannot tree-shake them: they were ~270 KB of a ~490 KB health bundle. Handlers speak English only
// (zod registers `en` by itself) and never convert to or from JSON Schema, so bundles get English
// alone and, for the converters, stand-ins with the same export names. The stand-ins keep every name
// (esbuild fails the build on a missing import, never at run time); calling one throws.
const ZOD_INTERNAL = /[\\/]zod[\\/]v4[\\/](classic|core|mini)[\\/]/;
const STUBBED = {
  '../locales/index.js': 'locales',
  './from-json-schema.js': 'classic/from-json-schema.js',
  './to-json-schema.js': 'core/to-json-schema.js',
  '../core/to-json-schema.js': 'core/to-json-schema.js',
  './json-schema-processors.js': 'core/json-schema-processors.js',
  '../core/json-schema-processors.js': 'core/json-schema-processors.js',
  './json-schema-generator.js': 'core/json-schema-generator.js',
};

function exportNames(source) {
  const names = new Set();
  for (const m of source.matchAll(/^export (?:async )?(?:function\*?|const|let|var|class) ([A-Za-z_$][\w$]*)/gm))
    names.add(m[1]);
  for (const m of source.matchAll(/^export \{([^}]*)\}/gm)) {
    for (const part of m[1].split(',')) {
      const name = part
        .trim()
        .split(/\s+as\s+/)
        .pop();
      if (name) names.add(name);
    }
  }
  return [...names];
}

function stubSource(which, realPath) {
  if (which === 'locales') return 'export { default as en } from "zod/v4/locales/en.js";';
  const real = fs.readFileSync(realPath, 'utf8');
  const lines = [
    'function notBundled() { throw new Error("zod JSON Schema conversion is not bundled (scripts/esbuild-plugins.js)"); }',
  ];
  for (const name of exportNames(real)) {
    // Functions that zod calls while building a schema return a method: it must exist, and throws when used.
    lines.push(`export function ${name}() { return notBundled; }`);
  }
  return lines.join('\n');
}

const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(build) {
    build.onResolve({ filter: /(locales\/index|json-schema[\w-]*)\.js$/ }, (args) => {
      const which = STUBBED[args.path];
      if (!which || !ZOD_INTERNAL.test(args.importer)) return undefined;
      return { path: which, namespace: 'zod-stub', pluginData: path.resolve(path.dirname(args.importer), args.path) };
    });
    build.onLoad({ filter: /.*/, namespace: 'zod-stub' }, (args) => ({
      contents: stubSource(args.path, args.pluginData),
      resolveDir: __dirname,
    }));
  },
};

// lib/ui/assets.ts reads uPlot from node_modules at run time, which a Lambda bundle does not have:
// in a bundle the module becomes the same two texts as string literals.
const UI_ASSETS = /[\\/]lib[\\/]ui[\\/]assets\.ts$/;

const inlineChartAssets = {
  name: 'inline-chart-assets',
  setup(build) {
    build.onLoad({ filter: UI_ASSETS }, () => {
      const script = fs.readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8');
      const styles = fs.readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');
      return {
        loader: 'js',
        contents: `const assets = { script: ${JSON.stringify(script)}, styles: ${JSON.stringify(styles)} };
export function chartAssets() { return assets; }`,
      };
    });
  },
};

module.exports = [zodEnglishOnly, inlineChartAssets];
