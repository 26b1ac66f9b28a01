import { readFileSync } from 'node:fs';

/**
 * uPlot's script and styles, served inline by the chart page so that it needs no CDN: it works
 * offline, in Lambda, and under a Content-Security-Policy that allows nothing from elsewhere.
 *
 * Under tsx and jest this reads them from node_modules. A Lambda bundle has no node_modules, so
 * scripts/esbuild-plugins.js replaces this whole module at bundle time with one that returns the same
 * two texts as string literals. Keep the export's name and shape in step with that plugin.
 */
export interface ChartAssets {
  readonly script: string;
  readonly styles: string;
}

let cached: ChartAssets | undefined;

export function chartAssets(): ChartAssets {
  cached ??= {
    script: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8'),
    styles: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8'),
  };
  return cached;
}
