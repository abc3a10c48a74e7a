//! Conv2d speed on the model's shapes: our op (forward; forward + both gradients through
//! autograd, and for the stems also with the input as plain data, as training runs them;
//! forward + both gradients computed directly for a given `dy`), candle's stock
//! op (forward, and both gradients through autograd), and ONNX Runtime's forward, all in
//! one run; prints ratios.
//!
//! ONNX Runtime is loaded at run time from `ORT_DYLIB_PATH`; without it the ORT column
//! is skipped. The library comes from the PyPI wheel:
//! `pip download --no-deps onnxruntime==1.32.0 -d target/ort`, unzip it there, and point
//! `ORT_DYLIB_PATH` at `target/ort/onnxruntime/capi/libonnxruntime.so.1.32.0`.
//! `CONV_BENCH_SKIP_STOCK=1` skips candle's slow stock op.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};
use revstream::ops::conv::{ConvConfig, benchmark_cases, conv2d, conv2d_grads, conv2d_stock};

/// Per-iteration times of every sample, keyed by (case, column).
static TIMES: Mutex<BTreeMap<(String, &'static str), Vec<Duration>>> = Mutex::new(BTreeMap::new());

/// Times `f` for criterion and records the per-iteration time of each sample.
fn timed(case: &str, column: &'static str, iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let elapsed = start.elapsed();
    let mut times = TIMES.lock().unwrap();
    let per = elapsed / iters.max(1) as u32;
    times
        .entry((case.to_string(), column))
        .or_default()
        .push(per);
    elapsed
}

fn median(case: &str, column: &'static str) -> Option<Duration> {
    let times = TIMES.lock().unwrap();
    let mut v = times.get(&(case.to_string(), column))?.clone();
    v.sort();
    v.get(v.len() / 2).copied()
}

fn bench(c: &mut Criterion) {
    // As in the binaries: reuse freed buffers instead of page-faulting fresh ones per call.
    revstream::alloc::keep_freed_memory();
    let dev = Device::Cpu;
    let threads = rayon::current_num_threads();
    let skip_stock = std::env::var_os("CONV_BENCH_SKIP_STOCK").is_some();
    let mut ort = match onnx::Runtime::load(threads) {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("ONNX Runtime column skipped: {e}");
            None
        }
    };
    for case in benchmark_cases() {
        let (n, ci, h, w) = case.x;
        let (kh, kw) = case.cfg.kernel;
        let x = Tensor::randn(0f32, 1.0, case.x, &dev).unwrap();
        let wt =
            Tensor::randn(0f32, 0.1, (case.c_out, ci / case.cfg.groups, kh, kw), &dev).unwrap();
        let (xv, wv) = (
            Var::from_tensor(&x).unwrap(),
            Var::from_tensor(&wt).unwrap(),
        );
        let mut group = c.benchmark_group(case.name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        let name = case.name;
        let cfg = case.cfg;
        let fwd_bwd = |conv: fn(&Tensor, &Tensor, &ConvConfig) -> candle_core::Result<Tensor>| {
            let y = conv(xv.as_tensor(), wv.as_tensor(), &cfg).unwrap();
            // Seeds dy = ones: the least autograd overhead around the op.
            let grads = y.backward().unwrap();
            assert!(grads.get(xv.as_tensor()).is_some() && grads.get(wv.as_tensor()).is_some());
        };
        group.bench_function("ours_fwd", |b| {
            b.iter_custom(|i| timed(name, "ours_fwd", i, || drop(conv2d(&x, &wt, &cfg).unwrap())))
        });
        group.bench_function("ours_fwd_bwd", |b| {
            b.iter_custom(|i| timed(name, "ours_fwd_bwd", i, || fwd_bwd(conv2d)))
        });
        if case.first_layer() {
            // As training runs a stem: its input is a plain tensor, so autograd asks for
            // the weight gradient only.
            group.bench_function("ours_fwd_bwd_data", |b| {
                b.iter_custom(|i| {
                    timed(name, "ours_fwd_bwd_data", i, || {
                        let y = conv2d(&x, wv.as_tensor(), &cfg).unwrap();
                        let grads = y.backward().unwrap();
                        assert!(grads.get(&x).is_none() && grads.get(wv.as_tensor()).is_some());
                    })
                })
            });
        }
        // The kernels alone, as a training step runs them: dy arrives from the layer
        // above, so no y-sized seed and no graph walk.
        let dy = Tensor::randn(0f32, 1.0, conv2d(&x, &wt, &cfg).unwrap().shape(), &dev).unwrap();
        group.bench_function("ours_fwd_grads", |b| {
            b.iter_custom(|i| {
                timed(name, "ours_fwd_grads", i, || {
                    drop(conv2d(&x, &wt, &cfg).unwrap());
                    drop(conv2d_grads(&x, &wt, &dy, &cfg).unwrap());
                })
            })
        });
        if !skip_stock {
            group.bench_function("candle_fwd", |b| {
                b.iter_custom(|i| {
                    timed(name, "candle_fwd", i, || {
                        drop(conv2d_stock(&x, &wt, &cfg).unwrap())
                    })
                })
            });
            group.bench_function("candle_fwd_bwd", |b| {
                b.iter_custom(|i| timed(name, "candle_fwd_bwd", i, || fwd_bwd(conv2d_stock)))
            });
        }
        if let Some(rt) = ort.as_mut() {
            let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let ws = wt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut session = rt.conv_session(case.x, &ws, wt.dims(), &cfg).unwrap();
            // Same numbers as ours, so the race is fair.
            let theirs = onnx::run(&mut session, case.x, &xs).unwrap();
            let ours = conv2d(&x, &wt, &cfg)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>();
            let diff = ours
                .unwrap()
                .iter()
                .zip(&theirs)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff < 1e-3, "{name}: ORT and ours differ by {diff}");
            group.bench_function("ort_fwd", |b| {
                b.iter_custom(|i| {
                    timed(name, "ort_fwd", i, || {
                        drop(onnx::run(&mut session, case.x, &xs).unwrap())
                    })
                })
            });
        }
        group.finish();
        if median(name, "ours_fwd").is_some() {
            report(name, (n, ci, h, w), threads);
        }
    }
}

/// Prints this case's medians and the ratios the goals are stated in.
fn report(name: &str, x: (usize, usize, usize, usize), threads: usize) {
    let ms = |col| median(name, col).map(|d| d.as_secs_f64() * 1e3);
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "-".to_string(),
    };
    let (of, ofb, ofg, cf, cfb, ort) = (
        ms("ours_fwd"),
        ms("ours_fwd_bwd"),
        ms("ours_fwd_grads"),
        ms("candle_fwd"),
        ms("candle_fwd_bwd"),
        ms("ort_fwd"),
    );
    println!(
        "| {name} {x:?} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {threads} |",
        fmt(of),
        fmt(ofb),
        fmt(ofg),
        fmt(cf),
        fmt(cfb),
        fmt(ort),
        ratio(of, ort),
        ratio(ofb, of),
        ratio(ofg, of),
        ratio(cf, of),
    );
    println!(
        "  (columns: ours fwd | ours fwd+bwd | ours fwd+grads | candle fwd | candle fwd+bwd | \
         ORT fwd | ours/ORT fwd | ours fwd+bwd/fwd | ours fwd+grads/fwd | candle/ours fwd | \
         threads)"
    );
    if let Some(data) = ms("ours_fwd_bwd_data") {
        println!(
            "  first layer, as trained (no input gradient): fwd+bwd {}, {} x fwd",
            fmt(Some(data)),
            ratio(Some(data), of)
        );
    }
}

/// ONNX Runtime on a one-node Conv graph written by hand in protobuf.
mod onnx {
    use ort::session::Session;
    use ort::value::TensorRef;
    use revstream::ops::conv::ConvConfig;

    /// A loaded ONNX Runtime with its thread count.
    pub struct Runtime {
        env: ort::environment::Environment,
        threads: usize,
    }

    impl Runtime {
        /// Loads the library named by `ORT_DYLIB_PATH`.
        pub fn load(threads: usize) -> Result<Self, String> {
            let path = std::env::var("ORT_DYLIB_PATH")
                .map_err(|_| "ORT_DYLIB_PATH is not set".to_string())?;
            if !std::path::Path::new(&path).is_file() {
                return Err(format!("no library at ORT_DYLIB_PATH={path}"));
            }
            let env = ort::init_from(&path)
                .map_err(|e| e.to_string())?
                .build()
                .map_err(|e| e.to_string())?;
            Ok(Self { env, threads })
        }

        /// A session running one Conv with weight `w` as an initializer.
        pub fn conv_session(
            &self,
            x: (usize, usize, usize, usize),
            w: &[f32],
            w_dims: &[usize],
            cfg: &ConvConfig,
        ) -> ort::Result<Session> {
            let model = conv_model(x, w, w_dims, cfg);
            Session::builder(&self.env)?
                .with_intra_threads(self.threads)
                .map_err(ort::Error::<()>::from)?
                .commit_from_memory(&model)
        }
    }

    /// Runs the session on `x` and returns its output.
    pub fn run(
        session: &mut Session,
        x: (usize, usize, usize, usize),
        data: &[f32],
    ) -> ort::Result<Vec<f32>> {
        let shape = [x.0, x.1, x.2, x.3];
        let input = TensorRef::from_array_view((shape, data))?;
        let out = session.run(ort::inputs![input])?;
        Ok(out[0].try_extract_tensor::<f32>()?.1.to_vec())
    }

    /// Protobuf writer for the few ONNX messages a one-node graph needs.
    #[derive(Default)]
    struct Pb(Vec<u8>);

    impl Pb {
        fn varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
        }
        fn int(&mut self, field: u64, v: i64) -> &mut Self {
            self.varint(field << 3);
            self.varint(v as u64);
            self
        }
        fn bytes(&mut self, field: u64, b: &[u8]) -> &mut Self {
            self.varint((field << 3) | 2);
            self.varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }
        fn str(&mut self, field: u64, s: &str) -> &mut Self {
            self.bytes(field, s.as_bytes())
        }
        fn msg(&mut self, field: u64, m: &Pb) -> &mut Self {
            self.bytes(field, &m.0)
        }
    }

    /// ValueInfoProto of a float tensor.
    fn value_info(name: &str, dims: &[usize]) -> Pb {
        let mut shape = Pb::default();
        for &d in dims {
            shape.msg(1, Pb::default().int(1, d as i64));
        }
        let mut tensor = Pb::default();
        tensor.int(1, 1).msg(2, &shape);
        let mut ty = Pb::default();
        ty.msg(1, &tensor);
        let mut vi = Pb::default();
        vi.str(1, name).msg(2, &ty);
        vi
    }

    /// AttributeProto holding a list of ints (type INTS = 7).
    fn ints(name: &str, v: &[usize]) -> Pb {
        let mut a = Pb::default();
        a.str(1, name).int(20, 7);
        for &x in v {
            a.int(8, x as i64);
        }
        a
    }

    /// ModelProto (IR 8, opset 13) of `Y = Conv(X, W)`.
    fn conv_model(
        x: (usize, usize, usize, usize),
        w: &[f32],
        w_dims: &[usize],
        cfg: &ConvConfig,
    ) -> Vec<u8> {
        let (kh, kw) = cfg.kernel;
        let (sh, sw) = cfg.stride;
        let (ph, pw) = cfg.padding;
        let ho = (x.2 + 2 * ph - kh) / sh + 1;
        let wo = (x.3 + 2 * pw - kw) / sw + 1;
        let mut node = Pb::default();
        node.str(1, "X").str(1, "W").str(2, "Y").str(4, "Conv");
        node.msg(5, &ints("kernel_shape", &[kh, kw]))
            .msg(5, &ints("strides", &[sh, sw]))
            .msg(5, &ints("pads", &[ph, pw, ph, pw]))
            .msg(
                5,
                Pb::default()
                    .str(1, "group")
                    .int(20, 2)
                    .int(3, cfg.groups as i64),
            );
        let mut weight = Pb::default();
        for &d in w_dims {
            weight.int(1, d as i64);
        }
        let raw: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        weight.int(2, 1).str(8, "W").bytes(9, &raw);
        let mut graph = Pb::default();
        graph
            .msg(1, &node)
            .str(2, "conv")
            .msg(5, &weight)
            .msg(11, &value_info("X", &[x.0, x.1, x.2, x.3]))
            .msg(12, &value_info("Y", &[x.0, w_dims[0], ho, wo]));
        let mut model = Pb::default();
        model
            .int(1, 8)
            .str(2, "revstream-bench")
            .msg(7, &graph)
            .msg(8, Pb::default().str(1, "").int(2, 13));
        model.0
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
