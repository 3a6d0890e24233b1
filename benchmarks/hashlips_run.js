// HashLips Art Engine 2 (@hashlips-lab/art-engine, sharp/libvips) on a layers folder laid out in its
// naming (<Layer>__z<order>/<Trait>__w<weight>.png). Run by benchmarks/hashlips.py:
//   node hashlips_run.js <layers> <out> <items> <width> <height>   -> one JSON line on stdout
const path = require("path");
const { ArtEngine, inputs, generators, renderers, exporters } = require("@hashlips-lab/art-engine");

async function main() {
  const [layers, out, items, width, height] = process.argv.slice(2);
  const engine = new ArtEngine({
    cachePath: path.join(out, "cache"),
    outputPath: path.join(out, "output"),
    useCache: false,
    inputs: { layers: new inputs.ImageLayersInput({ assetsBasePath: layers }) },
    generators: [new generators.ImageLayersAttributesGenerator({ dataSet: "layers", startIndex: 1, endIndex: Number(items) })],
    renderers: [new renderers.ItemAttributesRenderer({}),
                new renderers.ImageLayersRenderer({ width: Number(width), height: Number(height) })],
    exporters: [new exporters.ImagesExporter()],
  });
  const t0 = process.hrtime.bigint();
  await engine.run();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ items: Number(items), seconds, items_per_s: Number(items) / seconds }));
}

main().catch((err) => { console.error(err); process.exit(1); });
