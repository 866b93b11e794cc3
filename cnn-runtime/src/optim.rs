//! Optimizers, as PyTorch defines them.
//!
//! A network hands its parameter tensors to the optimizer in a fixed order
//! (layer by layer, weight then bias), each with its gradient, so that an
//! optimizer keeps its state per tensor by index.

/// Updates parameters from their gradients.
pub trait Optimizer {
    /// Called once at the start of every training step.
    fn begin_step(&mut self) {}

    /// Updates parameter tensor `index` from its gradient (same length).
    fn update(&mut self, index: usize, param: &mut [f32], grad: &[f32]);
}

/// Stochastic gradient descent, `torch.optim.SGD` (no dampening, no Nesterov).
/// A velocity below 1e-30 is taken as 0 (see `flush` in the source).
///
/// ```
/// let opt = cnn_runtime::optim::Sgd::new(0.01).momentum(0.9).weight_decay(5e-4);
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    velocity: Vec<Vec<f32>>,
}

impl Sgd {
    pub fn new(lr: f32) -> Sgd {
        Sgd { lr, momentum: 0.0, weight_decay: 0.0, velocity: Vec::new() }
    }

    /// `buf = momentum * buf + grad`, `param -= lr * buf`; the first step's buffer is the gradient.
    pub fn momentum(self, momentum: f32) -> Sgd {
        Sgd { momentum, ..self }
    }

    /// Adds `weight_decay * param` to every gradient (L2).
    pub fn weight_decay(self, weight_decay: f32) -> Sgd {
        Sgd { weight_decay, ..self }
    }

    /// Changes the learning rate, for a schedule.
    pub fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    pub fn lr(&self) -> f32 {
        self.lr
    }
}

impl Optimizer for Sgd {
    fn update(&mut self, index: usize, param: &mut [f32], grad: &[f32]) {
        let (lr, wd) = (self.lr, self.weight_decay);
        if self.momentum == 0.0 {
            param.iter_mut().zip(grad).for_each(|(p, g)| *p -= lr * (g + wd * *p));
            return;
        }
        if self.velocity.len() <= index {
            self.velocity.resize_with(index + 1, Vec::new);
        }
        // In a local, as Adam's settings (below).
        let momentum = self.momentum;
        let velocity = &mut self.velocity[index];
        let first = velocity.is_empty();
        velocity.resize(param.len(), 0.0);
        for ((p, g), v) in param.iter_mut().zip(grad).zip(velocity.iter_mut()) {
            let g = g + wd * *p;
            *v = if first { g } else { momentum * flush(*v, TINY_VELOCITY) + g };
            *p -= lr * *v;
        }
    }
}

/// Adam, `torch.optim.Adam` with its defaults: betas 0.9 and 0.999, eps 1e-8.
/// A gradient or first moment below `eps * 1e-9`, and a second moment below
/// `(eps * 1e-5)^2`, is taken as 0: it would move its weight by less than
/// `lr * 1e-9`, and decaying further it would be a subnormal float, slow on
/// x86 (see `flush` in the source).
#[derive(Clone, Debug)]
pub struct Adam {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step: i32,
    moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Adam {
    pub fn new(lr: f32) -> Adam {
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 0, moments: Vec::new() }
    }

    pub fn betas(self, beta1: f32, beta2: f32) -> Adam {
        Adam { beta1, beta2, ..self }
    }

    pub fn eps(self, eps: f32) -> Adam {
        Adam { eps, ..self }
    }

    /// Adds `weight_decay * param` to every gradient (L2, as `Adam`, not `AdamW`).
    pub fn weight_decay(self, weight_decay: f32) -> Adam {
        Adam { weight_decay, ..self }
    }

    /// Changes the learning rate, for a schedule.
    pub fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }

    pub fn lr(&self) -> f32 {
        self.lr
    }
}

impl Optimizer for Adam {
    fn begin_step(&mut self) {
        self.step += 1;
    }

    fn update(&mut self, index: usize, param: &mut [f32], grad: &[f32]) {
        if self.moments.len() <= index {
            self.moments.resize_with(index + 1, Default::default);
        }
        let (m, v) = &mut self.moments[index];
        m.resize(param.len(), 0.0);
        v.resize(param.len(), 0.0);
        let step = self.step.max(1);
        let (c1, c2) = (1.0 - self.beta1.powi(step), 1.0 - self.beta2.powi(step));
        // The settings in locals: read through `self` beside `m` and `v`,
        // which borrow from it, they were loaded anew for every value, and
        // the loop ran a value at a time. Each value alone, so the same
        // bits at every vector width.
        let (lr, beta1, beta2, eps, weight_decay) =
            (self.lr, self.beta1, self.beta2, self.eps, self.weight_decay);
        // What moves no weight is flushed to zero before it is multiplied
        // (see `flush`): a gradient or first moment below `eps * 1e-9`,
        // which moves its weight by less than `lr * 1e-9 / c1`, and a second
        // moment whose square root is below `eps * 1e-5`. With `eps` 0
        // nothing is.
        let (tiny_g, tiny_v) = (eps * 1e-9, (eps * 1e-5).powi(2));
        crate::cpu::vectorized(
            #[inline(always)]
            || {
                for (((p, g), m), v) in param.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = flush(g + weight_decay * *p, tiny_g);
                    *m = beta1 * flush(*m, tiny_g) + (1.0 - beta1) * g;
                    *v = beta2 * flush(*v, tiny_v) + (1.0 - beta2) * g * g;
                    *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                }
            },
        );
    }
}

/// A velocity too small to move any weight but one within `1e-23` of 0.
const TINY_VELOCITY: f32 = 1e-30;

/// `value`, or 0 if it is smaller than `tiny`. An optimizer's state decays
/// geometrically where gradients vanish (a weight of a unit that never
/// fires), into subnormal floats (below 1.2e-38), and on x86 each multiply
/// that reads or makes one takes a microcode assist about a hundred times
/// slower than itself: Adam's update of LeNet-5 took several times longer
/// than it should after a few hundred steps. Flushing before multiplying,
/// rather than setting the CPU's flush-to-zero mode, keeps the default
/// floating-point environment the compiler assumes.
#[inline(always)]
fn flush(value: f32, tiny: f32) -> f32 {
    if value.abs() < tiny { 0.0 } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_with_momentum_follows_pytorch() {
        // torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01), p = 1, grad 0.5 twice:
        // g = 0.51, buf = 0.51, p = 0.949; g = 0.50949, buf = 0.96849, p = 0.852151.
        let mut opt = Sgd::new(0.1).momentum(0.9).weight_decay(0.01);
        let mut p = [1.0f32];
        opt.update(0, &mut p, &[0.5]);
        assert!((p[0] - 0.949).abs() < 1e-6);
        opt.update(0, &mut p, &[0.5]);
        assert!((p[0] - 0.852_151).abs() < 1e-6, "{}", p[0]);
    }

    #[test]
    fn state_that_decays_is_flushed_before_it_is_subnormal() {
        // One gradient, then 900 of zero: left alone, 0.1 * 0.9^899 (Adam's
        // first moment) and 0.9^899 (a velocity) would be ~1e-42 and ~1e-41.
        let (mut adam, mut sgd) = (Adam::new(0.01), Sgd::new(0.01).momentum(0.9));
        let (mut p, mut q) = ([1.0f32], [1.0f32]);
        for step in 0..900 {
            let grad = [if step == 0 { 1.0 } else { 0.0 }];
            adam.begin_step();
            adam.update(0, &mut p, &grad);
            sgd.update(0, &mut q, &grad);
        }
        let (m, v) = (adam.moments[0].0[0], adam.moments[0].1[0]);
        for value in [m, v, sgd.velocity[0][0]] {
            assert!(value == 0.0 || value.is_normal(), "{value:e} is subnormal");
        }
    }

    #[test]
    fn adam_first_steps_move_by_lr() {
        // With bias correction the first step is lr * g / (|g| + eps) = lr * sign(g).
        let mut opt = Adam::new(0.01);
        let mut p = [1.0f32, -1.0];
        opt.begin_step();
        opt.update(0, &mut p, &[3.0, -0.001]);
        assert!((p[0] - 0.99).abs() < 1e-6 && (p[1] + 0.99).abs() < 1e-5, "{p:?}");
        // Second step, same gradient: m/c1 = g, v/c2 = g^2, again lr * sign(g).
        opt.begin_step();
        opt.update(0, &mut p, &[3.0, -0.001]);
        assert!((p[0] - 0.98).abs() < 1e-6, "{p:?}");
    }
}
