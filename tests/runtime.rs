//! Properties of the runtime as a whole: results bit-identical whatever
//! the thread count and the batch an image comes in, and no buffer that
//! grows with use.

mod common;

#[path = "../examples/seeds/nets.rs"]
mod nets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use cnn::ndarray::Array4;
use common::{random4, rng};
use nets::{Cifar3Block, FastaiMnist, LeNet5};

/// Counts allocations and tracks the peak of live bytes of the thread
/// that is `ON`: the test harness starts the threads of other tests
/// meanwhile, which allocate too.
struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}
static COUNT: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Whether this thread's allocations count (not while its thread-locals
/// are torn down).
fn counting() -> bool {
    ON.try_with(Cell::get).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            COUNT.fetch_add(1, SeqCst);
            let live = LIVE.fetch_add(layout.size(), SeqCst) + layout.size();
            PEAK.fetch_max(live, SeqCst);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            LIVE.fetch_sub(layout.size().min(LIVE.load(SeqCst)), SeqCst);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this file run one at a time: the counters are global.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Allocations and peak live bytes of `f` on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (usize, usize, T) {
    COUNT.store(0, SeqCst);
    LIVE.store(0, SeqCst);
    PEAK.store(0, SeqCst);
    ON.set(true);
    let out = f();
    ON.set(false);
    (COUNT.load(SeqCst), PEAK.load(SeqCst), out)
}

#[test]
fn results_are_bit_identical_whatever_the_thread_count() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = Cifar3Block::with_seed(3);
    let x = random4(&mut rng(40), (37, 32, 32, 3));
    let run = |threads| common::on_threads(threads, || net.forward(x.view()).unwrap());
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
    let mnist = FastaiMnist::with_seed(4);
    let x = random4(&mut rng(41), (50, 28, 28, 1));
    assert_eq!(
        common::on_threads(1, || mnist.forward(x.view()).unwrap()),
        common::on_threads(2, || mnist.forward(x.view()).unwrap())
    );
}

cnn::cnn! {
    /// Ends in a conv: its tiles write the pass's output, which is not
    /// zeroed beforehand. 40x40 output pixels are several tiles an image.
    struct EndsInConv { input 42x42x3; conv 16 k3 relu; conv 8 k3 p1; }
}

#[test]
fn a_pass_that_ends_in_a_conv_writes_all_of_its_output() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = EndsInConv::with_seed(6);
    let x = random4(&mut rng(43), (9, 42, 42, 3));
    // The layers one by one, each into an output of NaNs.
    let hidden = net.conv1.forward(x.view()).unwrap().mapv(|v| v.max(0.0));
    let expected = net.conv2.forward(hidden.view()).unwrap();
    for threads in [1, 2, 3] {
        let batch = common::on_threads(threads, || net.forward(x.view()).unwrap());
        assert_eq!(batch, expected, "{threads} threads");
        let one = cnn::ndarray::s![4..5, .., .., ..];
        let alone = common::on_threads(threads, || net.forward(x.slice(one)).unwrap());
        assert_eq!(alone, expected.slice(one), "one image, {threads} threads");
    }
}

#[test]
fn each_image_of_a_batch_gets_what_it_gets_alone() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 37 images of 32x32x32 activations are several chunks of a pass
    // (CHUNK_BYTES in infer.rs), the last one short; one image is one chunk.
    let net = Cifar3Block::with_seed(5);
    let x = random4(&mut rng(42), (37, 32, 32, 3));
    let batch = net.forward(x.view()).unwrap();
    for i in 0..37 {
        let alone = net.forward(x.slice(cnn::ndarray::s![i..i + 1, .., .., ..])).unwrap();
        assert_eq!(batch.row(i), alone.row(0), "image {i}");
    }
}

#[test]
fn buffers_do_not_grow_with_batch_size_or_repeats() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // One thread, so that work is not split differently between calls and
    // the pass runs on the thread whose allocations count.
    common::on_threads(1, || {
        let net = LeNet5::with_seed(1);
        let batch = |n| Array4::<f32>::from_elem((n, 32, 32, 1), 0.25);
        let (largest, small) = (batch(64), batch(4));
        net.forward(largest.view()).unwrap(); // the workspace grows once
        let (count, _, _) = measure(|| net.forward(largest.view()).unwrap());
        for _ in 0..3 {
            assert_eq!(measure(|| net.forward(largest.view()).unwrap()).0, count, "allocations per repeat");
        }
        // On x86 with AVX2 or AVX-512 the forward GEMMs are the runtime's
        // own and allocate nothing: the output is the one allocation.
        // Elsewhere matrixmultiply allocates a packing buffer per call (its
        // API takes none), so the count follows the number of tiles. The
        // peak of live memory beyond the output: no buffer of the network
        // grows; matrixmultiply's packing buffer is per call and bounded.
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            assert_eq!(count, 1, "allocations per forward pass");
        }
        let output_bytes = |n: usize| n * 10 * 4;
        let (_, peak_large, _) = measure(|| net.forward(largest.view()).unwrap());
        let (_, peak_small, _) = measure(|| net.forward(small.view()).unwrap());
        let extra_large = peak_large - output_bytes(64);
        let extra_small = peak_small - output_bytes(4);
        assert!(extra_small <= extra_large, "{extra_small} > {extra_large}");
        // LeNet-5's largest activation for 64 images is 64*28*28*6 floats; a
        // pass that allocated its activations would hold at least that.
        assert!(extra_large < 64 * 28 * 28 * 6 * 4, "{extra_large} bytes live beyond the output");
    });
}
