//! Top-p eigenvectors of a symmetric matrix by optimisation on the Stiefel manifold:
//! min −½·tr(XᵀMX) s.t. XᵀX = I, solved by the retraction-free landing update or by a
//! retraction baseline, printing the objective and ‖XᵀX − I‖_F as it goes and comparing with the
//! exact answer (M is built with a known spectrum).
//!
//! `cargo run --release --bin landing -- --n 100 --p 5 --method landing --start-noise 0.01`

use std::time::Instant;

use burn::tensor::{backend::Backend, Distribution, ElementConversion, Tensor};
use clap::{Parser, ValueEnum};
use manifold_lora::backend::{self, Inner};
use manifold_lora::manifold::{distance, random_stiefel, Manifold};
use manifold_lora::optim::{EigenProblem, Landing, Retraction, RetractionKind};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Method {
    /// X ← X − α·grad f − μ·X(XᵀX − I)
    Landing,
    /// Riemannian gradient step + QR retraction
    Qr,
    /// Riemannian gradient step + polar retraction (Newton–Schulz)
    Polar,
    /// Cayley retraction along the gradient
    Cayley,
}

#[derive(Debug, Parser)]
#[command(about = "Top-p eigenvectors by landing vs retractions on the Stiefel manifold")]
struct Args {
    /// Matrix size n.
    #[arg(long, default_value_t = 100)]
    n: usize,
    /// Number of eigenvectors p.
    #[arg(long, default_value_t = 5)]
    p: usize,
    /// Optimisation method.
    #[arg(long, value_enum, default_value_t = Method::Landing)]
    method: Method,
    /// Step size α. The spectrum is scaled to [1, 2]; landing needs α·‖M‖ small enough for the
    /// normal pull to dominate the drift off the manifold (α = 0.5 is too large here, 0.3 works).
    #[arg(long, default_value_t = 0.25)]
    step_size: f64,
    /// Landing weight μ (1/3 suffices by the landing lemma).
    #[arg(long, default_value_t = 1.0 / 3.0)]
    mu: f64,
    /// Iterations.
    #[arg(long, default_value_t = 3000)]
    iterations: usize,
    /// Print every k iterations.
    #[arg(long, default_value_t = 250)]
    every: usize,
    /// Start this far off the manifold (std of Gaussian noise added to a Stiefel point).
    #[arg(long, default_value_t = 0.0)]
    start_noise: f64,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[global_allocator]
static ALLOCATOR: manifold_lora::alloc::Allocator = manifold_lora::alloc::Allocator;

fn main() {
    manifold_lora::alloc::keep_freed_memory();
    let args = Args::parse();
    if args.p == 0 || args.p > args.n {
        eprintln!(
            "error: need 1 ≤ p ≤ n, got p = {} and n = {}",
            args.p, args.n
        );
        std::process::exit(2);
    }
    let device = backend::device();
    Inner::seed(&device, args.seed);
    // Eigenvalues evenly spread in [1, 2]: a relative gap of 1/n between neighbours.
    let eigenvalues: Vec<f64> = (0..args.n)
        .map(|i| 1.0 + i as f64 / (args.n.max(2) - 1) as f64)
        .collect();
    let (problem, optimum, optimal) =
        EigenProblem::<Inner>::with_spectrum(&eigenvalues, args.p, &device);
    let mut x = random_stiefel::<Inner>(args.n, args.p, &device);
    if args.start_noise > 0.0 {
        x = x + Tensor::random(
            [args.n, args.p],
            Distribution::Normal(0.0, args.start_noise),
            &device,
        );
    }
    let landing = Landing {
        step_size: args.step_size,
        mu: args.mu,
    };
    let retraction = |kind| Retraction::new(kind, args.step_size);
    println!(
        "backend {} | n {} p {} | method {:?} α {} | optimum {optimum:.8}",
        backend::NAME,
        args.n,
        args.p,
        args.method,
        args.step_size
    );
    println!(
        "{:>8} {:>16} {:>14} {:>14}",
        "iter", "objective", "gap", "‖XᵀX−I‖_F"
    );
    let start = Instant::now();
    for it in 0..=args.iterations {
        if it % args.every.max(1) == 0 || it == args.iterations {
            let objective = problem.objective(x.clone());
            let dist: f64 = distance(Manifold::Stiefel, x.clone()).into_scalar().elem();
            println!(
                "{it:>8} {objective:>16.8} {:>14.3e} {dist:>14.3e}",
                objective - optimum
            );
        }
        if it == args.iterations {
            break;
        }
        let grad = problem.gradient(x.clone());
        x = match args.method {
            Method::Landing => landing.step(x, grad),
            Method::Qr => step(retraction(RetractionKind::Qr), x, grad),
            Method::Polar => step(retraction(RetractionKind::Polar), x, grad),
            Method::Cayley => step(retraction(RetractionKind::Cayley), x, grad),
        };
    }
    let elapsed = start.elapsed();
    let subspace = EigenProblem::subspace_error(x, optimal);
    println!(
        "done in {:.3}s ({:.1} µs/iter); subspace error ‖XXᵀ − X*X*ᵀ‖_F = {subspace:.3e}",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / args.iterations.max(1) as f64
    );
}

fn step<B: Backend>(method: Retraction, x: Tensor<B, 2>, grad: Tensor<B, 2>) -> Tensor<B, 2> {
    match method.step(x, grad) {
        Ok(next) => next,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
