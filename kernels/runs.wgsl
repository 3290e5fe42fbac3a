// A label image read back as runs: every maximal run of one non-zero label along a row becomes
// three words (its first pixel's raster index, its length, its label), so a nuclei field (a
// few runs per object and row, most pixels background) crosses the bus in far fewer bytes
// than one word per pixel. The host expands the runs into the image again
// (`Gpu::read_labels`): exact, whatever order the runs were written in, because runs do not
// overlap.
//
// `encode`: one invocation per pixel; a pixel that starts a run (a label unlike its left
// neighbour's, or the row's first pixel) walks right to the run's end. Slots are handed out
// per workgroup (one atomic on the global counter per workgroup, then each start's place
// among its workgroup's), and a run is written when its slot lies within the capacity. The
// counter ends at the number of runs, so the host knows both how many words to read and
// whether they all fitted (else it reads the image itself).

struct Params {
    width: u32,
    height: u32,
    // Runs the buffer holds.
    capacity: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
// Word 0: the number of runs found (whether or not they fitted).
@group(0) @binding(2) var<storage, read_write> counter: array<atomic<u32>>;
// Run k in words 3k (first pixel), 3k + 1 (length), 3k + 2 (label).
@group(0) @binding(3) var<storage, read_write> runs: array<u32>;

// Runs started in this workgroup, and where its slots begin.
var<workgroup> found: atomic<u32>;
var<workgroup> base: u32;

@compute @workgroup_size(16, 16)
fn encode(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // No early return: every invocation reaches the barriers.
    let inside = id.x < p.width && id.y < p.height;
    let row = id.y * p.width;
    let i = row + id.x;
    var l = 0u;
    var starts = false;
    if (inside) {
        l = labels[i];
        starts = l != 0u && (id.x == 0u || labels[i - 1u] != l);
    }
    var own = 0u;
    if (starts) {
        own = atomicAdd(&found, 1u);
    }
    workgroupBarrier();
    if (li == 0u) {
        base = atomicAdd(&counter[0], atomicLoad(&found));
    }
    let k = workgroupUniformLoad(&base) + own;
    if (!starts || k >= p.capacity) {
        return;
    }
    var end = id.x + 1u;
    while (end < p.width && labels[row + end] == l) {
        end += 1u;
    }
    runs[3u * k] = i;
    runs[3u * k + 1u] = end - id.x;
    runs[3u * k + 2u] = l;
}
