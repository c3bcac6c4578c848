"""Fused C++ kernel of the angular symmetry functions (G4/G5), with its analytic gradient.

The PyTorch path of :class:`~mlpot.descriptors.acsf.ACSF` is vectorised over triplets but
makes one pass over memory per elementwise operation; this kernel does the whole triplet loop
in one pass per centre (forward) and one for the gradient with respect to the pair vectors
(backward), parallel over centres with ATen's thread pool. Memory is O(pairs + atoms ×
features): no triplet array exists.

It is compiled on first use with ``torch.utils.cpp_extension.load_inline`` (needs a C++
compiler and ninja; the build is cached in torch's extension folder). When that fails, or when
``MLPOT_FUSED_KERNEL=0`` is set, ACSF uses its PyTorch path, which gives the same numbers.

The gradient is computed once (``once_differentiable``): second derivatives (force training
without the feature cache) need the PyTorch path; :func:`fused_kernel_enabled` (a context
manager) switches the kernel off for such code.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings

import torch

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>

namespace {

template <typename T>
inline T ipow(T base, int e) {
  T result = 1;
  while (e) {
    if (e & 1) result *= base;
    base *= base;
    e >>= 1;
  }
  return result;
}

struct Setup {
  int64_t n_parts, n_narrow, n_zl, n_species, width;
  const double *eta, *rs, *rc, *r_inner, *zeta, *lam, *norm;
  const int64_t *pair_table;
  std::vector<int> izeta;
  std::vector<char> is_int;
  bool clamp;
  double rc_narrow_max2;
  int n_lambda = 0, ladder_size = 1;
  double lambdas[2];
  std::vector<int> lambda_index;
};

// cosine cutoff with inner fraction: 1 below r_inner, 0 from rc, cosine in between
template <typename T>
inline void cutoff(T r, double rc, double r_in, T& f, T& df) {
  if (r >= rc) { f = 0; df = 0; return; }
  if (r < r_in) { f = 1; df = 0; return; }
  const T scale = M_PI / (rc - r_in);
  const T x = (r - r_in) * scale;
  f = 0.5 * (std::cos(x) + 1.0);
  df = -0.5 * scale * std::sin(x);
}

template <typename T>
inline void radial(const Setup& s, int64_t p, T r, T& a, T& da) {
  T f, df;
  cutoff<T>(r, s.rc[p], s.r_inner[p], f, df);
  if (f == 0) { a = 0; da = 0; return; }
  const T d = r - s.rs[p];
  const T g = s.eta[p] == 0.0 ? T(1) : std::exp(-s.eta[p] * d * d);
  a = g * f;
  da = g * df - 2.0 * s.eta[p] * d * a;
}

// R_jk factors of the narrow (G4) parts: w[p] *= e_p(r_jk) (de: also e_p'(r_jk), w = 1 then)
// one cutoff evaluation per distinct (rc, r_inner), one exponential per eta != 0
template <typename T>
inline void narrow_factors(const Setup& s, T rjk, T* w, T* de) {
  double last_rc = -1, last_in = -1;
  T f = 0, df = 0;
  for (int64_t p = 0; p < s.n_narrow; ++p) {
    if (s.rc[p] != last_rc || s.r_inner[p] != last_in) {
      cutoff<T>(rjk, s.rc[p], s.r_inner[p], f, df);
      last_rc = s.rc[p];
      last_in = s.r_inner[p];
    }
    if (f == 0 && df == 0) {
      w[p] = 0;
      if (de) de[p] = 0;
      continue;
    }
    const T d = rjk - s.rs[p];
    const T g = s.eta[p] == 0.0 ? T(1) : std::exp(-s.eta[p] * d * d);
    if (de) {
      w[p] = g * f;
      de[p] = g * df - 2.0 * s.eta[p] * d * g * f;
    } else {
      w[p] *= g * f;
    }
  }
}

// distances and radial factors a_p(r), a_p'(r) of a centre's n neighbours
template <typename T>
void neighbours(const Setup& s, const T* v, int64_t n, std::vector<T>& r, std::vector<T>& a,
                std::vector<T>& da) {
  r.resize(n);
  a.resize(n * s.n_parts);
  da.resize(n * s.n_parts);
  for (int64_t j = 0; j < n; ++j) {
    const T* x = v + 3 * j;
    r[j] = std::sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]);
    for (int64_t p = 0; p < s.n_parts; ++p)
      radial<T>(s, p, r[j], a[j * s.n_parts + p], da[j * s.n_parts + p]);
  }
}

// (1 + lambda cos)^zeta for every (zeta, lambda) and, if dpw, d/dcos of it. Integer zeta: from
// a ladder base^(2^b) per distinct lambda (zeta in {1, 2, 4, 16} costs 4 squarings in all).
template <typename T>
inline void powers(const Setup& s, T cos_t, T* pw, T* dpw) {
  T ladder[2][8];
  for (int l = 0; l < s.n_lambda; ++l) {
    T base = 1.0 + s.lambdas[l] * cos_t;
    if (s.clamp && base < 0) base = 0;
    ladder[l][0] = base;
    for (int b = 1; b < s.ladder_size; ++b) ladder[l][b] = ladder[l][b - 1] * ladder[l][b - 1];
  }
  for (int64_t z = 0; z < s.n_zl; ++z) {
    const int l = s.lambda_index[z];
    const T base = ladder[l][0];
    if (s.is_int[z]) {
      const int e = s.izeta[z];
      // base^(e-1) from the ladder, then base^e = base^(e-1) * base
      T below = 1;
      for (int b = 0, bits = e - 1; bits; ++b, bits >>= 1)
        if (bits & 1) below *= ladder[l][b];
      pw[z] = below * base;
      if (dpw) dpw[z] = e * s.lam[z] * below;
    } else {
      pw[z] = std::pow(base, (T)s.zeta[z]);
      if (dpw) dpw[z] = base > 0 ? s.zeta[z] * s.lam[z] * pw[z] / base : T(0);
    }
  }
}

template <typename T>
void forward_impl(const Setup& s, const T* vec, const int64_t* species, const int64_t* start,
                  const int64_t* count, int64_t n_centres, T* out) {
  at::parallel_for(0, n_centres, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> r, a, w(s.n_parts), pw(s.n_zl), da;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t n = count[c];
      if (n < 2) continue;
      const T* v = vec + 3 * start[c];
      const int64_t* sp = species + start[c];
      neighbours<T>(s, v, n, r, a, da);
      T* g = out + c * s.width;
      for (int64_t k = 1; k < n; ++k) {
        const T* vk = v + 3 * k;
        for (int64_t j = 0; j < k; ++j) {
          const T* vj = v + 3 * j;
          T rjk = 0;
          if (s.n_narrow) {
            const T dx = vk[0] - vj[0], dy = vk[1] - vj[1], dz = vk[2] - vj[2];
            const T rjk2 = dx * dx + dy * dy + dz * dz;
            if (s.n_narrow == s.n_parts && rjk2 >= s.rc_narrow_max2) continue;
            rjk = std::sqrt(rjk2);
          }
          bool any = false;
          for (int64_t p = 0; p < s.n_parts; ++p) {
            w[p] = a[j * s.n_parts + p] * a[k * s.n_parts + p];
            any = any || w[p] != 0;
          }
          if (!any) continue;
          if (s.n_narrow) narrow_factors<T>(s, rjk, w.data(), nullptr);
          const T cos_t = (vj[0] * vk[0] + vj[1] * vk[1] + vj[2] * vk[2]) / (r[j] * r[k]);
          powers<T>(s, cos_t, pw.data(), nullptr);
          T* gp = g + s.pair_table[sp[j] * s.n_species + sp[k]] * s.n_parts * s.n_zl;
          for (int64_t p = 0; p < s.n_parts; ++p) {
            if (w[p] == 0) continue;
            T* row = gp + p * s.n_zl;
            for (int64_t z = 0; z < s.n_zl; ++z) row[z] += w[p] * pw[z];
          }
        }
      }
      for (int64_t q = 0; q < s.width; ++q) g[q] *= s.norm[q % s.n_zl];
    }
  });
}

template <typename T>
void backward_impl(const Setup& s, const T* vec, const int64_t* species, const int64_t* start,
                   const int64_t* count, int64_t n_centres, const T* grad_out, T* grad_vec) {
  at::parallel_for(0, n_centres, 1, [&](int64_t c0, int64_t c1) {
    std::vector<T> r, a, da, e(s.n_parts), de(s.n_parts), pw(s.n_zl), dpw(s.n_zl), gn;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t n = count[c];
      if (n < 2) continue;
      const T* v = vec + 3 * start[c];
      T* gv = grad_vec + 3 * start[c];
      const int64_t* sp = species + start[c];
      neighbours<T>(s, v, n, r, a, da);
      // incoming gradient times the normalisation of each (zeta, lambda)
      gn.resize(s.width);
      const T* go = grad_out + c * s.width;
      for (int64_t q = 0; q < s.width; ++q) gn[q] = go[q] * s.norm[q % s.n_zl];
      for (int64_t k = 1; k < n; ++k) {
        const T* vk = v + 3 * k;
        const T* ak = a.data() + k * s.n_parts;
        const T* dak = da.data() + k * s.n_parts;
        for (int64_t j = 0; j < k; ++j) {
          const T* vj = v + 3 * j;
          const T* aj = a.data() + j * s.n_parts;
          const T* daj = da.data() + j * s.n_parts;
          T dx = 0, dy = 0, dz = 0, rjk = 1;
          if (s.n_narrow) {
            dx = vk[0] - vj[0]; dy = vk[1] - vj[1]; dz = vk[2] - vj[2];
            const T rjk2 = dx * dx + dy * dy + dz * dz;
            if (s.n_narrow == s.n_parts && rjk2 >= s.rc_narrow_max2) continue;
            rjk = std::sqrt(rjk2);
          }
          bool any = false;
          for (int64_t p = 0; p < s.n_parts; ++p) any = any || (aj[p] * ak[p] != 0);
          if (!any) continue;
          for (int64_t p = 0; p < s.n_parts; ++p) { e[p] = 1; de[p] = 0; }
          if (s.n_narrow) narrow_factors<T>(s, rjk, e.data(), de.data());
          const T rr = r[j] * r[k];
          const T cos_t = (vj[0] * vk[0] + vj[1] * vk[1] + vj[2] * vk[2]) / rr;
          powers<T>(s, cos_t, pw.data(), dpw.data());
          const T* gp = gn.data() + s.pair_table[sp[j] * s.n_species + sp[k]] * s.n_parts * s.n_zl;
          T g_cos = 0, g_rj = 0, g_rk = 0, g_rjk = 0;
          for (int64_t p = 0; p < s.n_parts; ++p) {
            const T A = aj[p] * ak[p];
            if (A == 0 && daj[p] * ak[p] == 0 && aj[p] * dak[p] == 0) continue;
            const T* row = gp + p * s.n_zl;
            T dl_dw = 0, dl_dpw = 0;
            for (int64_t z = 0; z < s.n_zl; ++z) {
              dl_dw += row[z] * pw[z];
              dl_dpw += row[z] * dpw[z];
            }
            g_cos += A * e[p] * dl_dpw;
            g_rj += dl_dw * daj[p] * ak[p] * e[p];
            g_rk += dl_dw * aj[p] * dak[p] * e[p];
            if (p < s.n_narrow) g_rjk += dl_dw * A * de[p];
          }
          const T inv_rj = 1.0 / r[j], inv_rk = 1.0 / r[k], inv_rr = 1.0 / rr;
          const T cj = g_rj * inv_rj - g_cos * cos_t * inv_rj * inv_rj;
          const T ck = g_rk * inv_rk - g_cos * cos_t * inv_rk * inv_rk;
          const T cx = g_cos * inv_rr;
          const T cjk = s.n_narrow ? g_rjk / rjk : T(0);
          T* gj = gv + 3 * j;
          T* gk = gv + 3 * k;
          gj[0] += cj * vj[0] + cx * vk[0] - cjk * dx;
          gj[1] += cj * vj[1] + cx * vk[1] - cjk * dy;
          gj[2] += cj * vj[2] + cx * vk[2] - cjk * dz;
          gk[0] += ck * vk[0] + cx * vj[0] + cjk * dx;
          gk[1] += ck * vk[1] + cx * vj[1] + cjk * dy;
          gk[2] += ck * vk[2] + cx * vj[2] + cjk * dz;
        }
      }
    }
  });
}

Setup make_setup(const torch::Tensor& part_params, int64_t n_narrow, const torch::Tensor& zl_params,
                 const torch::Tensor& pair_table, int64_t width) {
  Setup s;
  s.n_parts = part_params.size(0);
  s.n_narrow = n_narrow;
  s.n_zl = zl_params.size(0);
  s.n_species = pair_table.size(0);
  s.width = width;
  const double* pp = part_params.data_ptr<double>();
  const double* zp = zl_params.data_ptr<double>();
  // part_params columns: eta, rs, rc, r_inner; zl_params columns: zeta, lambda, norm
  static thread_local std::vector<double> cols;
  cols.assign(4 * s.n_parts + 3 * s.n_zl, 0.0);
  for (int64_t p = 0; p < s.n_parts; ++p)
    for (int q = 0; q < 4; ++q) cols[q * s.n_parts + p] = pp[4 * p + q];
  double* zc = cols.data() + 4 * s.n_parts;
  for (int64_t z = 0; z < s.n_zl; ++z)
    for (int q = 0; q < 3; ++q) zc[q * s.n_zl + z] = zp[3 * z + q];
  s.eta = cols.data();
  s.rs = cols.data() + s.n_parts;
  s.rc = cols.data() + 2 * s.n_parts;
  s.r_inner = cols.data() + 3 * s.n_parts;
  s.zeta = zc;
  s.lam = zc + s.n_zl;
  s.norm = zc + 2 * s.n_zl;
  s.pair_table = pair_table.data_ptr<int64_t>();
  s.clamp = false;
  s.rc_narrow_max2 = 0;
  for (int64_t p = 0; p < s.n_narrow; ++p)
    s.rc_narrow_max2 = std::max(s.rc_narrow_max2, s.rc[p] * s.rc[p]);
  for (int64_t z = 0; z < s.n_zl; ++z) {
    int l = 0;
    while (l < s.n_lambda && s.lambdas[l] != s.lam[z]) ++l;
    if (l == s.n_lambda) {
      TORCH_CHECK(s.n_lambda < 2, "fused ACSF kernel: at most two lambda values");
      s.lambdas[s.n_lambda++] = s.lam[z];
    }
    s.lambda_index.push_back(l);
    const double zeta = s.zeta[z];
    const bool integer = zeta == std::floor(zeta) && zeta >= 1 && zeta <= 128;
    if (integer)
      while ((1 << (s.ladder_size - 1)) < zeta) ++s.ladder_size;
    s.is_int.push_back(integer);
    s.izeta.push_back(integer ? (int)zeta : 0);
    if (!integer) s.clamp = true;
  }
  return s;
}

}  // namespace

torch::Tensor angular_forward(torch::Tensor vec, torch::Tensor species, torch::Tensor start,
                              torch::Tensor count, torch::Tensor part_params, int64_t n_narrow,
                              torch::Tensor zl_params, torch::Tensor pair_table, int64_t width) {
  Setup s = make_setup(part_params, n_narrow, zl_params, pair_table, width);
  const int64_t n_centres = count.size(0);
  auto out = torch::zeros({n_centres, width}, vec.options());
  AT_DISPATCH_FLOATING_TYPES(vec.scalar_type(), "angular_forward", [&] {
    forward_impl<scalar_t>(s, vec.data_ptr<scalar_t>(), species.data_ptr<int64_t>(),
                           start.data_ptr<int64_t>(), count.data_ptr<int64_t>(), n_centres,
                           out.data_ptr<scalar_t>());
  });
  return out;
}

torch::Tensor angular_backward(torch::Tensor vec, torch::Tensor species, torch::Tensor start,
                               torch::Tensor count, torch::Tensor part_params, int64_t n_narrow,
                               torch::Tensor zl_params, torch::Tensor pair_table,
                               torch::Tensor grad_out) {
  Setup s = make_setup(part_params, n_narrow, zl_params, pair_table, grad_out.size(1));
  auto grad_vec = torch::zeros_like(vec);
  AT_DISPATCH_FLOATING_TYPES(vec.scalar_type(), "angular_backward", [&] {
    backward_impl<scalar_t>(s, vec.data_ptr<scalar_t>(), species.data_ptr<int64_t>(),
                            start.data_ptr<int64_t>(), count.data_ptr<int64_t>(), count.size(0),
                            grad_out.data_ptr<scalar_t>(), grad_vec.data_ptr<scalar_t>());
  });
  return grad_vec;
}
"""

_lock = threading.Lock()
_module = None
_failed: str | None = None
_enabled = os.environ.get("MLPOT_FUSED_KERNEL", "1") != "0"


def load_kernel():
    """The compiled extension, or None if it cannot be built (reason in a one-time warning)."""
    global _module, _failed
    if _module is not None or _failed is not None:
        return _module
    with _lock:
        if _module is None and _failed is None:
            try:
                from torch.utils.cpp_extension import load_inline

                _module = load_inline(
                    name="mlpot_acsf_fused_v3",
                    cpp_sources=[_SOURCE],
                    functions=["angular_forward", "angular_backward"],
                    extra_cflags=["-O3", "-ffp-contract=off"],
                    verbose=False,
                )
            except Exception as exc:  # noqa: BLE001 - any build problem means: use PyTorch
                _failed = f"{type(exc).__name__}: {exc}"
                warnings.warn(
                    "mlpot: the fused ACSF kernel could not be built; using the PyTorch path "
                    f"(same results, slower). Reason: {_failed[:300]}",
                    stacklevel=2,
                )
    return _module


def kernel_available() -> bool:
    """Whether the fused kernel is switched on and builds."""
    return _enabled and load_kernel() is not None


@contextlib.contextmanager
def fused_kernel_enabled(enabled: bool):
    """Switch the fused kernel on or off inside a ``with`` block (e.g. for double backward)."""
    global _enabled
    previous = _enabled
    _enabled = bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


class AngularSums(torch.autograd.Function):
    """Angular sums (C, width) of centres whose pairs are contiguous rows of ``vec``."""

    @staticmethod
    def forward(
        ctx, vec, species, start, count, part_params, n_narrow, zl_params, pair_table, width
    ):
        module = load_kernel()
        vec = vec.contiguous()
        out = module.angular_forward(
            vec, species, start, count, part_params, n_narrow, zl_params, pair_table, width
        )
        ctx.save_for_backward(vec, species, start, count, part_params, zl_params, pair_table)
        ctx.n_narrow = n_narrow
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        vec, species, start, count, part_params, zl_params, pair_table = ctx.saved_tensors
        grad = load_kernel().angular_backward(
            vec,
            species,
            start,
            count,
            part_params,
            ctx.n_narrow,
            zl_params,
            pair_table,
            grad_out.contiguous(),
        )
        return grad, None, None, None, None, None, None, None, None
