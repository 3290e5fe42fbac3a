// A label image read back as runs: every maximal run of one non-zero label along a row becomes
// three words (its first pixel's raster index, its length, its label), so a nuclei field (a
// few runs per object and row, most pixels background) crosses the bus in far fewer bytes
// than one word per pixel. The host expands the runs into the image again
// (`Gpu::read_labels`): exact, whatever order the runs were written in, because runs do not
// overlap.
//
// With values (another image of one word per pixel, e.g. squared distances), each run also
// copies its pixels' values into a packed buffer, so only the labelled pixels' values come
// back; the host puts them back in place.
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
    // Value words `packed` holds; 0: no values are copied, and a run is 3 words.
    value_capacity: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
// Word 0: the number of runs found (whether or not they fitted); word 1: the pixels they
// cover (with values).
@group(0) @binding(2) var<storage, read_write> counter: array<atomic<u32>>;
// Run k in words s·k (first pixel), s·k + 1 (length), s·k + 2 (label) and, with values,
// s·k + 3 (where its values start in `packed`); s = 3, or 4 with values.
@group(0) @binding(3) var<storage, read_write> runs: array<u32>;
// With values: one word per pixel of the image (e.g. squared distances), copied run by run
// into `packed`, so only the labelled pixels' words come back.
@group(0) @binding(4) var<storage, read> values: array<u32>;
@group(0) @binding(5) var<storage, read_write> packed: array<u32>;

// Runs started in this workgroup and the pixels they cover, and where its slots begin.
var<workgroup> found: atomic<u32>;
var<workgroup> spanned: atomic<u32>;
var<workgroup> base: u32;
var<workgroup> value_base: u32;

@compute @workgroup_size(16, 16)
fn encode(
    @builtin(global_invocation_id) id: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    // No early return: every invocation reaches the barriers.
    let with_values = p.value_capacity > 0u;
    let inside = id.x < p.width && id.y < p.height;
    let row = id.y * p.width;
    let i = row + id.x;
    var l = 0u;
    var starts = false;
    if (inside) {
        l = labels[i];
        starts = l != 0u && (id.x == 0u || labels[i - 1u] != l);
    }
    var len = 0u;
    var own = 0u;
    var own_value = 0u;
    if (starts) {
        var end = id.x + 1u;
        while (end < p.width && labels[row + end] == l) {
            end += 1u;
        }
        len = end - id.x;
        own = atomicAdd(&found, 1u);
        if (with_values) {
            own_value = atomicAdd(&spanned, len);
        }
    }
    workgroupBarrier();
    if (li == 0u) {
        base = atomicAdd(&counter[0], atomicLoad(&found));
        if (with_values) {
            value_base = atomicAdd(&counter[1], atomicLoad(&spanned));
        }
    }
    let k = workgroupUniformLoad(&base) + own;
    let v = workgroupUniformLoad(&value_base) + own_value;
    if (!starts || k >= p.capacity) {
        return;
    }
    let s = select(3u, 4u, with_values);
    runs[s * k] = i;
    runs[s * k + 1u] = len;
    runs[s * k + 2u] = l;
    if (with_values) {
        runs[s * k + 3u] = v;
        if (v + len <= p.value_capacity) {
            for (var j = 0u; j < len; j += 1u) {
                packed[v + j] = values[i + j];
            }
        }
    }
}
