// Fused angular symmetry functions (G4/G5) of mlpot, with their analytic gradient.
//
// For each centre the kernel takes its neighbour pair vectors (contiguous rows of `vec`), sorts
// them by species, and walks the unordered neighbour pairs {j, k}, j < k, one k at a time: every
// quantity of the triplets (j, k) for j < k is an array over j, computed by short loops that the
// compiler vectorises (`#pragma omp simd`, -fopenmp-simd). The cosine cutoff and the gaussians
// use branch-free polynomial cos/sin/exp (absolute error < 1e-16 on the ranges used), so they
// vectorise too. Work and memory per centre are O(neighbours^2) and O(neighbours).
//
// Layout of the output row of a centre: [species pair q][part p][(zeta, lambda) z].
// Parts are (eta, r_shift, r_cut, r_inner); the first n_narrow parts are G4 (with the R_jk
// factor), the others G5.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kHalfPi = 1.57079632679489661923;
constexpr int64_t kLanes = 4;  // neighbour blocks: species segments start at multiples of this
constexpr double kFar = 1.0e6;  // distance of padding neighbours (beyond every cutoff), Å

inline int64_t round_up(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// four doubles (one AVX register; two SSE registers elsewhere), GCC/Clang vector extension
typedef double v4 __attribute__((vector_size(4 * sizeof(double))));
inline v4 load4(const double* p) {
  v4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(double* p, v4 v) { std::memcpy(p, &v, sizeof v); }
inline double sum4(v4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }
// 1 for the entries j0 + i < k of the block starting at j0 (triplets j < k), else 0
inline v4 below(int64_t j0, int64_t k) {
  v4 keep;
  for (int64_t i = 0; i < kLanes; ++i) keep[i] = j0 + i < k ? 1.0 : 0.0;
  return keep;
}

// sin(y) for |y| <= pi/2: Taylor series to y^21 (truncation < 2e-18)
inline double sin_half(double y) {
  const double z = y * y;
  double p = 1.9572941063391263e-20;
  p = p * z - 8.22063524662433e-18;
  p = p * z + 2.8114572543455206e-15;
  p = p * z - 7.647163731819816e-13;
  p = p * z + 1.6059043836821613e-10;
  p = p * z - 2.505210838544172e-08;
  p = p * z + 2.7557319223985893e-06;
  p = p * z - 0.0001984126984126984;
  p = p * z + 0.008333333333333333;
  p = p * z - 0.16666666666666666;
  return y + y * z * p;
}

// cos(y) for |y| <= pi/2: Taylor series to y^20 (truncation < 2e-17)
inline double cos_half(double y) {
  const double z = y * y;
  double p = 4.110317623312165e-19;
  p = p * z - 1.5619206968586225e-16;
  p = p * z + 4.779477332387385e-14;
  p = p * z - 1.1470745597729725e-11;
  p = p * z + 2.08767569878681e-09;
  p = p * z - 2.755731922398589e-07;
  p = p * z + 2.48015873015873e-05;
  p = p * z - 0.001388888888888889;
  p = p * z + 0.041666666666666664;
  p = p * z - 0.5;
  return 1.0 + z * p;
}

// exp(t) for t <= 0; exactly 0 below -708 (relative error ~2e-16)
inline double exp_neg(double t) {
  const double u = t < -708.0 ? -708.0 : t;
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52: rounds to an integer
  const double shifted = u * 1.4426950408889634 + kMagic;
  int64_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  const double n = shifted - kMagic;
  const double r = (u - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  double p = 1.6059043836821613e-10;
  p = p * r + 2.08767569878681e-09;
  p = p * r + 2.505210838544172e-08;
  p = p * r + 2.755731922398589e-07;
  p = p * r + 2.7557319223985893e-06;
  p = p * r + 2.48015873015873e-05;
  p = p * r + 0.0001984126984126984;
  p = p * r + 0.001388888888888889;
  p = p * r + 0.008333333333333333;
  p = p * r + 0.041666666666666664;
  p = p * r + 0.16666666666666666;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^n from the integer in the low bits of `shifted`
  const int64_t exponent = (bits - int64_t(0x4338000000000000LL) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &exponent, sizeof scale);
  return t < -708.0 ? 0.0 : p * scale;
}

// cosine cutoff with inner radius: 1 below r_in, 0 from rc, 0.5 (cos(pi x) + 1) between
inline void cutoff(const double* __restrict r, int64_t n, double rc, double r_in,
                   double* __restrict f) {
  const double scale = kPi / (rc - r_in);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    double x = (r[j] - r_in) * scale;
    x = x < 0.0 ? 0.0 : (x > kPi ? kPi : x);
    const double value = 0.5 - 0.5 * sin_half(x - kHalfPi);  // cos x = -sin(x - pi/2)
    f[j] = r[j] >= rc ? 0.0 : (r[j] < r_in ? 1.0 : value);
  }
}

inline void cutoff_grad(const double* __restrict r, int64_t n, double rc, double r_in,
                        double* __restrict f, double* __restrict df) {
  const double scale = kPi / (rc - r_in);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    double x = (r[j] - r_in) * scale;
    x = x < 0.0 ? 0.0 : (x > kPi ? kPi : x);
    const double y = x - kHalfPi;
    const bool inside = r[j] < rc && r[j] >= r_in;
    f[j] = r[j] >= rc ? 0.0 : (r[j] < r_in ? 1.0 : 0.5 - 0.5 * sin_half(y));
    df[j] = inside ? -0.5 * scale * cos_half(y) : 0.0;  // sin x = cos(x - pi/2)
  }
}

struct Setup {
  int64_t n_species = 0, n_radial = 0, n_parts = 0, n_narrow = 0, n_zl = 0;
  int64_t radial_width = 0, width = 0;
  // radial shapes: kind (0: exp(-eta (r - rs)^2) f_c, i.e. G1/G2; 1: cos(kappa r) f_c, G3)
  std::vector<int> radial_kind, radial_group;
  std::vector<double> radial_eta, radial_rs, radial_kappa;
  std::vector<double> rgroup_rc, rgroup_in;   // distinct radial cutoffs
  // angular parts (eta, rs, rc, r_in); the first n_narrow are G4
  std::vector<double> eta, rs, rc, r_in;
  std::vector<int> group;                     // narrow part -> cutoff group of R_jk
  std::vector<double> group_rc, group_in;
  double rc_angular2 = 0.0;                   // neighbours beyond this make no triplets
  double rc_all2 = 0.0;                       // neighbours beyond this add nothing at all
  std::vector<double> zeta, lam, norm;        // per (zeta, lambda)
  std::vector<int> lambda_index;
  std::vector<char> is_int;                   // integer zeta: ladder of squares, else pow()
  std::vector<std::vector<int>> bits_e, bits_em1;  // ladder levels giving base^e, base^(e-1)
  std::vector<int> pow2_level;                // b if zeta = 2^b, else -1
  // fast paths (forward and gradient) when every zeta is a power of two (1, 2, 4, 8, ...): the
  // powers are levels of the ladder of squares, computed in registers; per lambda its
  // (zeta, lambda) indices q and their levels
  bool pow2_all = false;
  int pow2_top = 0;
  std::vector<int> lambda_q[2], lambda_level[2];
  int level_q[2][8] = {{-1, -1, -1, -1, -1, -1, -1, -1}, {-1, -1, -1, -1, -1, -1, -1, -1}};
  std::vector<double> dpw_scale;              // d/dcos of base^e = dpw_scale * base^(e-1)
  int n_lambda = 0, ladder_size = 1;
  double lambdas[2] = {0, 0};
  bool clamp = false;                         // clamp 1 + lambda cos >= 0 (non-integer zeta)
  const int64_t* pair_table = nullptr;
};

int find_or_add(std::vector<double>& rcs, std::vector<double>& ins, double rc, double r_in) {
  for (size_t g = 0; g < rcs.size(); ++g)
    if (rcs[g] == rc && ins[g] == r_in) return (int)g;
  rcs.push_back(rc);
  ins.push_back(r_in);
  return (int)rcs.size() - 1;
}

// radial_params (R, 6): kind, eta, rs, kappa, rc, r_in; part_params (A, 4): eta, rs, rc, r_in;
// zl_params (Z, 3): zeta, lambda, 2^(1 - zeta); pair_table (S, S): species pair -> index
Setup make_setup(const torch::Tensor& radial_params, const torch::Tensor& part_params,
                 int64_t n_narrow, const torch::Tensor& zl_params,
                 const torch::Tensor& pair_table) {
  for (const auto* t : {&radial_params, &part_params, &zl_params})
    TORCH_CHECK(t->scalar_type() == torch::kFloat64 && t->is_contiguous(),
                "ACSF kernel: parameter tables must be contiguous float64");
  TORCH_CHECK(pair_table.scalar_type() == torch::kInt64 && pair_table.is_contiguous());
  Setup s;
  s.n_species = pair_table.size(0);
  s.pair_table = pair_table.data_ptr<int64_t>();
  s.n_radial = radial_params.size(0);
  const double* rp = radial_params.data_ptr<double>();
  for (int64_t i = 0; i < s.n_radial; ++i) {
    const double* row = rp + 6 * i;
    s.radial_kind.push_back((int)row[0]);
    s.radial_eta.push_back(row[1]);
    s.radial_rs.push_back(row[2]);
    s.radial_kappa.push_back(row[3]);
    s.radial_group.push_back(find_or_add(s.rgroup_rc, s.rgroup_in, row[4], row[5]));
    s.rc_all2 = std::max(s.rc_all2, row[4] * row[4]);
  }
  s.n_parts = part_params.size(0);
  s.n_narrow = n_narrow;
  const double* pp = part_params.data_ptr<double>();
  for (int64_t p = 0; p < s.n_parts; ++p) {
    s.eta.push_back(pp[4 * p]);
    s.rs.push_back(pp[4 * p + 1]);
    s.rc.push_back(pp[4 * p + 2]);
    s.r_in.push_back(pp[4 * p + 3]);
    s.rc_angular2 = std::max(s.rc_angular2, pp[4 * p + 2] * pp[4 * p + 2]);
    s.rc_all2 = std::max(s.rc_all2, s.rc_angular2);
    if (p < n_narrow) s.group.push_back(find_or_add(s.group_rc, s.group_in, s.rc[p], s.r_in[p]));
  }
  s.n_zl = zl_params.size(0);
  const double* zp = zl_params.data_ptr<double>();
  for (int64_t z = 0; z < s.n_zl; ++z) {
    const double zeta = zp[3 * z], lam = zp[3 * z + 1];
    s.zeta.push_back(zeta);
    s.lam.push_back(lam);
    s.norm.push_back(zp[3 * z + 2]);
    int l = 0;
    while (l < s.n_lambda && s.lambdas[l] != lam) ++l;
    if (l == s.n_lambda) {
      TORCH_CHECK(s.n_lambda < 2, "ACSF kernel: at most two lambda values");
      s.lambdas[s.n_lambda++] = lam;
    }
    s.lambda_index.push_back(l);
    const bool integer = zeta == std::floor(zeta) && zeta >= 1 && zeta <= 1024;
    s.is_int.push_back(integer);
    std::vector<int> be, bm;
    if (integer) {
      const int e = (int)zeta;
      for (int b = 0; (e >> b) != 0; ++b) {
        if ((e >> b) & 1) be.push_back(b);
        if (((e - 1) >> b) & 1) bm.push_back(b);
        s.ladder_size = std::max(s.ladder_size, b + 1);
      }
    } else {
      s.clamp = true;
    }
    s.bits_e.push_back(be);
    s.bits_em1.push_back(bm);
    s.pow2_level.push_back(integer && be.size() == 1 ? be[0] : -1);
    s.dpw_scale.push_back(integer ? zeta * lam : 1.0);
  }
  s.pow2_all = s.n_zl > 0 && !s.clamp;
  for (int64_t q = 0; q < s.n_zl; ++q) {
    const int b = s.pow2_level[q];
    if (b < 0 || b > 7) {
      s.pow2_all = false;
      continue;
    }
    s.pow2_top = std::max(s.pow2_top, b);
    s.lambda_q[s.lambda_index[q]].push_back((int)q);
    s.lambda_level[s.lambda_index[q]].push_back(b);
    s.level_q[s.lambda_index[q]][b] = (int)q;
  }
  s.radial_width = s.n_species * s.n_radial;
  s.width = s.radial_width + s.n_species * (s.n_species + 1) / 2 * s.n_parts * s.n_zl;
  return s;
}

// Per-thread scratch: arrays over the neighbours of one centre (capacity `cap`).
struct Scratch {
  int64_t cap = 0;
  std::vector<double> buf;
  std::vector<int64_t> src, sp, seg, fill, bucket;
  std::vector<const double*> pw_ptrs, dpw_ptrs, w_ptrs;
  std::vector<double> w_scale, g_dpw, g_level;
  // per neighbour
  double *x, *y, *z, *r, *inv_r, *a, *da, *rf, *rdf, *grad_r;  // a, da: [part][j]
  // per j < k of the current k
  double *cos_t, *dx, *dy, *dz, *rjk, *inv_rjk, *fc, *dfc, *nf, *dnf, *ladder, *prefix, *ones;
  double *pw, *dpw, *w;
  double *dlw, *dlpw, *gcos, *grj, *grk, *grjk, *gx, *gy, *gz, *tmp, *tmp2;

  void reserve(const Setup& s, int64_t n) {
    pw_ptrs.resize(s.n_zl);
    dpw_ptrs.resize(s.n_zl);
    w_ptrs.resize(s.n_parts);
    w_scale.resize(s.n_parts);
    if (n + kLanes <= cap) return;
    cap = round_up(std::max<int64_t>(n, 2 * cap)) + kLanes;
    const int64_t P = s.n_parts, G = (int64_t)s.group_rc.size(), N = s.n_narrow, Z = s.n_zl;
    const int64_t RG = (int64_t)s.rgroup_rc.size();
    const int64_t L = std::max(s.n_lambda, 1) * s.ladder_size;
    const int64_t rows = 5 + 2 * P + 2 * RG + 1 + 6 + 2 * G + 2 * N + 2 * L + 1 + 2 * Z + 3 * P + 9;
    buf.assign(rows * cap, 0.0);
    double* q = buf.data();
    auto take = [&](int64_t count) { double* out = q; q += count * cap; return out; };
    x = take(1); y = take(1); z = take(1); r = take(1); inv_r = take(1);
    a = take(P); da = take(P); rf = take(RG); rdf = take(RG); grad_r = take(1);
    cos_t = take(1); dx = take(1); dy = take(1); dz = take(1); rjk = take(1); inv_rjk = take(1);
    fc = take(G); dfc = take(G); nf = take(N); dnf = take(N); ladder = take(L);
    prefix = take(L); ones = take(1);
    std::fill(ones, ones + cap, 1.0);
    pw = take(Z); dpw = take(Z); w = take(P); dlw = take(P); dlpw = take(P);
    gcos = take(1); grj = take(1); grk = take(1); grjk = take(1);
    gx = take(1); gy = take(1); gz = take(1); tmp = take(1); tmp2 = take(1);
    src.resize(cap);
    sp.resize(cap);
  }
};

// Load the n pairs rows[0..n) of a centre, ordered: neighbours inside the angular cutoff by
// species (segments seg[t]..seg[t+1]), then those outside by species (seg[S + t]..); distances;
// angular radial factors a_p(r) and, for the gradient, a_p'(r) of the inside ones.
template <typename T>
int64_t load_centre(const Setup& s, const T* vec, const int64_t* species, const int64_t* rows,
                    int64_t n, Scratch& w, bool grad) {
  const int64_t S = s.n_species;
  w.seg.assign(2 * S + 1, 0);
  w.fill.resize(2 * S);
  // bucket of a pair: its species, + S when outside the angular cutoff, -1 when beyond every
  // cutoff (e.g. a neighbour list built with a skin): skipped, its gradient stays 0
  auto bucket = [&](int64_t row) -> int64_t {
    const T* v = vec + 3 * row;
    const double r2 = (double)v[0] * v[0] + (double)v[1] * v[1] + (double)v[2] * v[2];
    if (r2 >= s.rc_all2) return -1;
    return species[row] + (r2 < s.rc_angular2 ? 0 : S);
  };
  w.bucket.resize(std::max<int64_t>((int64_t)w.bucket.size(), n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = bucket(rows[i]);
    w.bucket[i] = b;
    if (b >= 0) ++w.seg[b + 1];
  }
  // each bucket starts at a multiple of kLanes; the gaps hold padding neighbours far away
  for (int64_t t = 0; t < 2 * S; ++t) w.seg[t + 1] = w.seg[t] + round_up(w.seg[t + 1]);
  const int64_t n_total = w.seg[2 * S];
  w.reserve(s, n_total);
  for (int64_t t = 0; t < 2 * S; ++t)
    for (int64_t d = w.seg[t]; d < w.seg[t + 1]; ++d) {
      w.src[d] = -1;
      w.sp[d] = t % S;
      w.x[d] = kFar;
      w.y[d] = w.z[d] = 0.0;
    }
  std::copy(w.seg.begin(), w.seg.end() - 1, w.fill.begin());
  for (int64_t i = 0; i < n; ++i) {
    if (w.bucket[i] < 0) continue;
    const int64_t row = rows[i];
    const int64_t d = w.fill[w.bucket[i]]++;
    w.src[d] = row;
    w.sp[d] = species[row];
    w.x[d] = (double)vec[3 * row];
    w.y[d] = (double)vec[3 * row + 1];
    w.z[d] = (double)vec[3 * row + 2];
  }
  const int64_t n_in = w.seg[S];
  double *__restrict x = w.x, *__restrict y = w.y, *__restrict z = w.z;
  double *__restrict r = w.r, *__restrict inv_r = w.inv_r;
#pragma omp simd
  for (int64_t j = 0; j < n_total; ++j) {
    r[j] = std::sqrt(x[j] * x[j] + y[j] * y[j] + z[j] * z[j]);
    inv_r[j] = r[j] > 0.0 ? 1.0 / r[j] : 0.0;
  }
  for (int64_t p = 0; p < s.n_parts; ++p) {
    double* __restrict a = w.a + p * w.cap;
    double* __restrict da = w.da + p * w.cap;
    double* __restrict f = w.tmp;
    const double eta = s.eta[p], rs = s.rs[p];
    if (grad) {
      cutoff_grad(r, n_in, s.rc[p], s.r_in[p], f, da);  // da holds f' for now
#pragma omp simd
      for (int64_t j = 0; j < n_in; ++j) {
        const double d = r[j] - rs;
        const double g = exp_neg(-eta * d * d);
        a[j] = g * f[j];
        da[j] = g * da[j] - 2.0 * eta * d * a[j];
      }
    } else {
      cutoff(r, n_in, s.rc[p], s.r_in[p], f);
#pragma omp simd
      for (int64_t j = 0; j < n_in; ++j) {
        const double d = r[j] - rs;
        a[j] = exp_neg(-eta * d * d) * f[j];
      }
    }
  }
  return n_in;  // the number of (padded) neighbours is w.seg[2 S]
}

// value (and derivative) of radial shape i at the n distances r, given its cutoff f (f')
void radial_shape(const Setup& s, int64_t i, const double* __restrict r, int64_t n,
                  const double* __restrict f, const double* __restrict df, double* __restrict v,
                  double* __restrict dv) {
  if (s.radial_kind[i] == 0) {
    const double eta = s.radial_eta[i], rs = s.radial_rs[i];
    if (dv) {
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) {
        const double d = r[j] - rs;
        const double g = exp_neg(-eta * d * d);
        v[j] = g * f[j];
        dv[j] = g * df[j] - 2.0 * eta * d * v[j];
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) {
        const double d = r[j] - rs;
        v[j] = exp_neg(-eta * d * d) * f[j];
      }
    }
  } else {
    const double kappa = s.radial_kappa[i];
    for (int64_t j = 0; j < n; ++j) {
      const double c = std::cos(kappa * r[j]);
      v[j] = c * f[j];
      if (dv) dv[j] = c * df[j] - kappa * std::sin(kappa * r[j]) * f[j];
    }
  }
}

// Everything of the triplets (j, k), j < m = round_up(k), that does not depend on the incoming
// gradient; the entries k <= j < m have base 1 + lambda cos = 0, hence zero powers.
// pw_ptrs[q] points at (1 + lambda cos)^zeta of (zeta, lambda) q (a ladder level when it is one).
void triplets(const Setup& s, Scratch& w, int64_t k, int64_t m, bool grad, bool powers = true) {
  const int64_t cap = w.cap;
  const double xk = w.x[k], yk = w.y[k], zk = w.z[k], inv_rk = w.inv_r[k];
  {
    const double *__restrict x = w.x, *__restrict y = w.y, *__restrict z = w.z;
    const double* __restrict inv_r = w.inv_r;
    double *__restrict cos_t = w.cos_t, *__restrict rjk = w.rjk;
    if (grad && s.n_narrow) {
      double *__restrict dx = w.dx, *__restrict dy = w.dy, *__restrict dz = w.dz;
      double* __restrict inv_rjk = w.inv_rjk;
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {
        cos_t[j] = (x[j] * xk + y[j] * yk + z[j] * zk) * inv_r[j] * inv_rk;
        dx[j] = xk - x[j];
        dy[j] = yk - y[j];
        dz[j] = zk - z[j];
        rjk[j] = std::sqrt(dx[j] * dx[j] + dy[j] * dy[j] + dz[j] * dz[j]);
        inv_rjk[j] = rjk[j] > 0.0 ? 1.0 / rjk[j] : 0.0;
      }
    } else if (s.n_narrow) {
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {
        cos_t[j] = (x[j] * xk + y[j] * yk + z[j] * zk) * inv_r[j] * inv_rk;
        const double ex = xk - x[j], ey = yk - y[j], ez = zk - z[j];
        rjk[j] = std::sqrt(ex * ex + ey * ey + ez * ez);
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < m; ++j)
        cos_t[j] = (x[j] * xk + y[j] * yk + z[j] * zk) * inv_r[j] * inv_rk;
    }
  }
  // R_jk factors of the narrow parts: nf = exp(-eta (R_jk - r_s)^2) f_c(R_jk), and nf'
  for (size_t g = 0; g < s.group_rc.size(); ++g) {
    if (grad)
      cutoff_grad(w.rjk, m, s.group_rc[g], s.group_in[g], w.fc + g * cap, w.dfc + g * cap);
    else
      cutoff(w.rjk, m, s.group_rc[g], s.group_in[g], w.fc + g * cap);
  }
  for (int64_t p = 0; p < s.n_narrow; ++p) {
    const double* __restrict fc = w.fc + s.group[p] * cap;
    const double* __restrict dfc = w.dfc + s.group[p] * cap;
    const double* __restrict rjk = w.rjk;
    double *__restrict nf = w.nf + p * cap, *__restrict dnf = w.dnf + p * cap;
    const double eta = s.eta[p], rs = s.rs[p];
    if (grad) {
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {
        const double d = rjk[j] - rs;
        const double e = exp_neg(-eta * d * d);
        nf[j] = e * fc[j];
        dnf[j] = e * dfc[j] - 2.0 * eta * d * nf[j];
      }
    } else if (eta == 0.0) {
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) nf[j] = fc[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) {
        const double d = rjk[j] - rs;
        nf[j] = exp_neg(-eta * d * d) * fc[j];
      }
    }
  }
  if (!powers) return;  // the caller builds the powers itself (power-of-two fast paths)
  // ladder base^(2^b) of base = 1 + lambda cos and prefix products base^(2^b - 1) =
  // ladder[0] ... ladder[b-1] (prefix level 0 would be ones, level 1 is the base itself), in
  // one pass; base = 0 for k <= j < m
  {
    const int64_t L = s.ladder_size;
    for (int64_t j = 0; j < m; j += kLanes) {
      const v4 c = load4(w.cos_t + j);
      const v4 keep = below(j, k);
      for (int l = 0; l < s.n_lambda; ++l) {
        v4 base = 1.0 + s.lambdas[l] * c;
        if (s.clamp) base = base > 0.0 ? base : 0.0;
        base *= keep;
        double* lad = w.ladder + l * L * cap + j;
        double* pre = w.prefix + l * L * cap + j;
        store4(lad, base);
        v4 level = base, product = base;
        for (int64_t b = 1; b < L; ++b) {
          if (b >= 2) store4(pre + b * cap, product);
          level *= level;
          store4(lad + b * cap, level);
          product *= level;
        }
      }
    }
  }
  // powers (1 + lambda cos)^zeta and (grad) their derivative in cos
  for (int64_t q = 0; q < s.n_zl; ++q) {
    const double* lad = w.ladder + (int64_t)s.lambda_index[q] * s.ladder_size * cap;
    double *__restrict pw = w.pw + q * cap, *__restrict dpw = w.dpw + q * cap;
    const double* __restrict base = lad;
    w.pw_ptrs[q] = pw;
    w.dpw_ptrs[q] = dpw;
    const int b2 = s.pow2_level[q];
    if (b2 >= 0) {  // zeta = 2^b2: the ladder level, and base^(zeta - 1) a prefix product
      w.pw_ptrs[q] = lad + b2 * cap;
      if (grad) {
        const double* pre = w.prefix + (int64_t)s.lambda_index[q] * s.ladder_size * cap;
        w.dpw_ptrs[q] = b2 == 0 ? w.ones : (b2 == 1 ? lad : pre + b2 * cap);
      }
      continue;
    }
    if (!s.is_int[q]) {
      const double zeta = s.zeta[q], lam = s.lam[q];
      for (int64_t j = 0; j < m; ++j) {
        pw[j] = std::pow(base[j], zeta);
        if (grad) dpw[j] = base[j] > 0.0 ? zeta * lam * pw[j] / base[j] : 0.0;
      }
      continue;
    }
    if (grad) {
      // base^(e-1) into dpw, then pw = base^(e-1) * base, dpw = e lambda base^(e-1)
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) dpw[j] = 1.0;
      for (int b : s.bits_em1[q]) {
        const double* __restrict level = lad + b * cap;
#pragma omp simd
        for (int64_t j = 0; j < m; ++j) dpw[j] *= level[j];
      }
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) pw[j] = dpw[j] * base[j];
    } else {
      const auto& bits = s.bits_e[q];
      const double* __restrict first = lad + bits[0] * cap;
      if (bits.size() == 1) {  // a power of two: the ladder level itself
        w.pw_ptrs[q] = first;
        continue;
      }
#pragma omp simd
      for (int64_t j = 0; j < m; ++j) pw[j] = first[j];
      for (size_t i = 1; i < bits.size(); ++i) {
        const double* __restrict level = lad + bits[i] * cap;
#pragma omp simd
        for (int64_t j = 0; j < m; ++j) pw[j] *= level[j];
      }
    }
  }
}

// out[p * stride] += scale[p] * sum_{j0 <= j < j1} w[p][j] pw[j] for p < NP (j0, j1 multiples
// of kLanes); four-lane partial sums, no horizontal sum
template <int NP>
inline void dot_parts(const double* const* w, const double* scale, const double* pw, int64_t j0,
                      int64_t j1, v4* out, int64_t stride) {
  v4 acc[NP];
  for (int p = 0; p < NP; ++p) acc[p] = v4{0.0, 0.0, 0.0, 0.0};
  for (int64_t j = j0; j < j1; j += kLanes) {
    const v4 b = load4(pw + j);
    for (int p = 0; p < NP; ++p) acc[p] += load4(w[p] + j) * b;
  }
  for (int p = 0; p < NP; ++p) out[p * stride] += scale[p] * acc[p];
}

// Share of the parts p0..p0+NP at the j block j (dL/dw_p in dlw, dL/dpw_p in dlpw) of dL/dcos,
// dL/dr_j, dL/dr_k and dL/dr_jk, added to w.gcos, w.grj, w.grk, w.grjk
template <int NP>
inline void grad_epilogue(const Setup& s, Scratch& w, const v4* dlw, const v4* dlpw, int64_t p0,
                          int64_t k, int64_t j) {
  const int64_t cap = w.cap;
  v4 gc = load4(w.gcos + j), gj = load4(w.grj + j), gk = load4(w.grk + j);
  v4 gjk = load4(w.grjk + j);
  for (int p = 0; p < NP; ++p) {
    const int64_t pp = p0 + p;
    const double ak = w.a[pp * cap + k], dak = w.da[pp * cap + k];
    const v4 aj = load4(w.a + pp * cap + j), daj = load4(w.da + pp * cap + j);
    if (pp < s.n_narrow) {
      const v4 nf = load4(w.nf + pp * cap + j), dnf = load4(w.dnf + pp * cap + j);
      const v4 t = dlw[p] * nf;
      gc += ak * aj * nf * dlpw[p];
      gj += ak * t * daj;
      gk += dak * t * aj;
      gjk += ak * dlw[p] * aj * dnf;
    } else {
      gc += ak * aj * dlpw[p];
      gj += ak * dlw[p] * daj;
      gk += dak * dlw[p] * aj;
    }
  }
  store4(w.gcos + j, gc);
  store4(w.grj + j, gj);
  store4(w.grk + j, gk);
  store4(w.grjk + j, gjk);
}

// For parts p0..p0+NP and j in [j0, j1): dL/dw_p = sum_q g_pw[p][q] pw_q and dL/dpw_p =
// sum_q g_dpw[p][q] base^(e_q - 1) in registers, then grad_epilogue
template <int NP>
inline void grad_parts(const Setup& s, Scratch& w, const double* g_pw, const double* g_dpw,
                       int64_t p0, int64_t k, int64_t j0, int64_t j1) {
  const int64_t Z = s.n_zl;
  const double* gp = g_pw + p0 * Z;
  const double* gd = g_dpw + p0 * Z;
  for (int64_t j = j0; j < j1; j += kLanes) {
    v4 dlw[NP], dlpw[NP];
    for (int p = 0; p < NP; ++p) dlw[p] = dlpw[p] = v4{0.0, 0.0, 0.0, 0.0};
    for (int64_t q = 0; q < Z; ++q) {
      const v4 u = load4(w.pw_ptrs[q] + j), du = load4(w.dpw_ptrs[q] + j);
      for (int p = 0; p < NP; ++p) {
        dlw[p] += gp[p * Z + q] * u;
        dlpw[p] += gd[p * Z + q] * du;
      }
    }
    grad_epilogue<NP>(s, w, dlw, dlpw, p0, k, j);
  }
}

// grad_parts when every zeta is a power of two: walks the ladder of squares level = base^(2^b)
// and the prefix products base^(2^b - 1) in registers, both lambdas in one pass, with the
// incoming gradient arranged by level (g_level: [lambda][level][part], for dL/dpw then d/dcos of
// it; levels no zeta uses are skipped), so no power is indexed at run time (an indexed ladder
// lives on the stack) and the two chains of squarings hide each other's latency
template <int NP, int NL>
inline void grad_pow2(const Setup& s, Scratch& w, const double* gw, const double* gd, int64_t p0,
                      int64_t k, int64_t j0, int64_t j1) {
  const int64_t P = s.n_parts;
  const int levels = s.pow2_top + 1;
  const int64_t lambda_stride = (int64_t)levels * P;
  for (int64_t j = j0; j < j1; j += kLanes) {
    v4 dlw[NP], dlpw[NP];
    for (int p = 0; p < NP; ++p) dlw[p] = dlpw[p] = v4{0.0, 0.0, 0.0, 0.0};
    const v4 c = load4(w.cos_t + j);
    const v4 keep = j + kLanes > k ? below(j, k) : v4{1.0, 1.0, 1.0, 1.0};
    v4 level[NL], prefix[NL];
    for (int l = 0; l < NL; ++l) {
      level[l] = (1.0 + s.lambdas[l] * c) * keep;
      prefix[l] = v4{1.0, 1.0, 1.0, 1.0};
    }
    for (int b = 0; b < levels; ++b) {
      for (int l = 0; l < NL; ++l) {
        if (s.level_q[l][b] >= 0) {
          const double* gwl = gw + l * lambda_stride + b * P + p0;
          const double* gdl = gd + l * lambda_stride + b * P + p0;
          for (int p = 0; p < NP; ++p) {
            dlw[p] += gwl[p] * level[l];
            dlpw[p] += gdl[p] * prefix[l];
          }
        }
        prefix[l] *= level[l];
        level[l] *= level[l];
      }
    }
    grad_epilogue<NP>(s, w, dlw, dlpw, p0, k, j);
  }
}

template <int NP>
inline void grad_pow2_l(const Setup& s, Scratch& w, const double* gw, const double* gd,
                        int64_t p0, int64_t k, int64_t j0, int64_t j1) {
  if (s.n_lambda == 2)
    grad_pow2<NP, 2>(s, w, gw, gd, p0, k, j0, j1);
  else
    grad_pow2<NP, 1>(s, w, gw, gd, p0, k, j0, j1);
}

// Forward fast path: out[p * Z + qi[i]] += scale[p] * sum_{j0 <= j < j1, j < k} w[p][j]
// (1 + lam cos_jk)^(2^level[i]) for NP parts and NQ powers of one lambda; the ladder of squares
// stays in registers, NP x NQ accumulators
template <int NP, int NQ>
inline void dot_pow2(const double* const* w, const double* scale, const double* cos_t,
                     double lam, const int* level, const int* qi, int top, int64_t j0,
                     int64_t j1, int64_t k, v4* row, int64_t Z) {
  v4 acc[NP][NQ];
  for (int p = 0; p < NP; ++p)
    for (int i = 0; i < NQ; ++i) acc[p][i] = v4{0.0, 0.0, 0.0, 0.0};
  for (int64_t j = j0; j < j1; j += kLanes) {
    v4 base = 1.0 + lam * load4(cos_t + j);
    if (j + kLanes > k) base *= below(j, k);  // the block that holds k: j >= k no triplets
    v4 ladder[8];
    ladder[0] = base;
    for (int b = 1; b <= top; ++b) ladder[b] = ladder[b - 1] * ladder[b - 1];
    v4 wv[NP];
    for (int p = 0; p < NP; ++p) wv[p] = load4(w[p] + j);
    for (int i = 0; i < NQ; ++i) {
      const v4 u = ladder[level[i]];
      for (int p = 0; p < NP; ++p) acc[p][i] += wv[p] * u;
    }
  }
  for (int p = 0; p < NP; ++p)
    for (int i = 0; i < NQ; ++i) row[p * Z + qi[i]] += scale[p] * acc[p][i];
}

template <int NP>
inline void dot_pow2_q(int nq, const double* const* w, const double* scale, const double* cos_t,
                       double lam, const int* level, const int* qi, int top, int64_t j0,
                       int64_t j1, int64_t k, v4* row, int64_t Z) {
  switch (nq) {
    case 1: dot_pow2<NP, 1>(w, scale, cos_t, lam, level, qi, top, j0, j1, k, row, Z); break;
    case 2: dot_pow2<NP, 2>(w, scale, cos_t, lam, level, qi, top, j0, j1, k, row, Z); break;
    case 3: dot_pow2<NP, 3>(w, scale, cos_t, lam, level, qi, top, j0, j1, k, row, Z); break;
    default: dot_pow2<NP, 4>(w, scale, cos_t, lam, level, qi, top, j0, j1, k, row, Z); break;
  }
}

template <typename T>
void centre_forward(const Setup& s, const T* vec, const int64_t* species, const int64_t* rows,
                    int64_t n, Scratch& w, double* acc, std::vector<v4>& lanes) {
  const int64_t n_in = load_centre<T>(s, vec, species, rows, n, w, false);
  const int64_t S = s.n_species, P = s.n_parts, Z = s.n_zl, cap = w.cap;
  const int64_t n_total = w.seg[2 * S];
  // radial sums: per species, over both buckets (inside and outside the angular cutoff)
  for (size_t g = 0; g < s.rgroup_rc.size(); ++g)
    cutoff(w.r, n_total, s.rgroup_rc[g], s.rgroup_in[g], w.rf + g * cap);
  for (int64_t i = 0; i < s.n_radial; ++i) {
    radial_shape(s, i, w.r, n_total, w.rf + s.radial_group[i] * cap, nullptr, w.tmp, nullptr);
    const double* __restrict v = w.tmp;
    for (int64_t t = 0; t < S; ++t) {
      double sum = 0.0;
      for (int64_t half = 0; half < 2; ++half) {
        const int64_t j0 = w.seg[half * S + t], j1 = w.seg[half * S + t + 1];
#pragma omp simd reduction(+ : sum)
        for (int64_t j = j0; j < j1; ++j) sum += v[j];
      }
      acc[t * s.n_radial + i] = sum;
    }
  }
  if (!P) return;
  const int64_t n_ang = s.width - s.radial_width;
  std::fill(lanes.begin(), lanes.end(), v4{0.0, 0.0, 0.0, 0.0});
  for (int64_t k = 1; k < n_in; ++k) {
    if (w.src[k] < 0) continue;  // padding
    const int64_t m = round_up(k);
    triplets(s, w, k, m, false, !s.pow2_all);
    // pair weights a_p(r_j) [nf_p(r_jk)], times a_p(r_k) in the sums
    for (int64_t p = 0; p < P; ++p) {
      w.w_scale[p] = w.a[p * cap + k];
      if (p < s.n_narrow) {
        const double* __restrict aj = w.a + p * cap;
        const double* __restrict nf = w.nf + p * cap;
        double* __restrict wp = w.w + p * cap;
#pragma omp simd
        for (int64_t j = 0; j < m; ++j) wp[j] = aj[j] * nf[j];
        w.w_ptrs[p] = wp;
      } else {
        w.w_ptrs[p] = w.a + p * cap;
      }
    }
    const int64_t sk = w.sp[k];
    for (int64_t t = 0; t < S; ++t) {
      const int64_t j0 = w.seg[t], j1 = std::min<int64_t>(w.seg[t + 1], m);
      if (j1 <= j0) continue;
      v4* row = lanes.data() + s.pair_table[t * S + sk] * P * Z;
      if (s.pow2_all) {
        for (int l = 0; l < s.n_lambda; ++l) {
          const int n_q = (int)s.lambda_q[l].size();
          for (int q0 = 0; q0 < n_q; q0 += 4) {
            const int nq = std::min(n_q - q0, 4);
            const int* level = s.lambda_level[l].data() + q0;
            const int* qi = s.lambda_q[l].data() + q0;
            for (int64_t p0 = 0; p0 < P; p0 += 2) {
              const double* const* wp = w.w_ptrs.data() + p0;
              const double* scale = w.w_scale.data() + p0;
              if (P - p0 >= 2)
                dot_pow2_q<2>(nq, wp, scale, w.cos_t, s.lambdas[l], level, qi, s.pow2_top, j0,
                              j1, k, row + p0 * Z, Z);
              else
                dot_pow2_q<1>(nq, wp, scale, w.cos_t, s.lambdas[l], level, qi, s.pow2_top, j0,
                              j1, k, row + p0 * Z, Z);
            }
          }
        }
        continue;
      }
      for (int64_t q = 0; q < Z; ++q) {
        const double* pw = w.pw_ptrs[q];
        for (int64_t p0 = 0; p0 < P; p0 += 4) {
          const double* const* wp = w.w_ptrs.data() + p0;
          const double* scale = w.w_scale.data() + p0;
          v4* out = row + p0 * Z + q;
          switch (std::min<int64_t>(P - p0, 4)) {
            case 1: dot_parts<1>(wp, scale, pw, j0, j1, out, Z); break;
            case 2: dot_parts<2>(wp, scale, pw, j0, j1, out, Z); break;
            case 3: dot_parts<3>(wp, scale, pw, j0, j1, out, Z); break;
            default: dot_parts<4>(wp, scale, pw, j0, j1, out, Z); break;
          }
        }
      }
    }
  }
  double* ang = acc + s.radial_width;
  for (int64_t i = 0; i < n_ang; i += Z)
    for (int64_t q = 0; q < Z; ++q) ang[i + q] = sum4(lanes[i + q]) * s.norm[q];
}

template <typename T>
void centre_backward(const Setup& s, const T* vec, const int64_t* species, const int64_t* rows,
                     int64_t n, Scratch& w, const double* gn, T* grad_vec) {
  const int64_t n_in = load_centre<T>(s, vec, species, rows, n, w, true);
  const int64_t S = s.n_species, P = s.n_parts, Z = s.n_zl, cap = w.cap;
  const int64_t n_total = w.seg[2 * S];
  // radial: dL/dr_j = sum_i g[species_j, i] v_i'(r_j)
  std::fill(w.grad_r, w.grad_r + n_total, 0.0);
  for (size_t g = 0; g < s.rgroup_rc.size(); ++g)
    cutoff_grad(w.r, n_total, s.rgroup_rc[g], s.rgroup_in[g], w.rf + g * cap, w.rdf + g * cap);
  for (int64_t i = 0; i < s.n_radial; ++i) {
    const int64_t grp = s.radial_group[i];
    radial_shape(s, i, w.r, n_total, w.rf + grp * cap, w.rdf + grp * cap, w.tmp, w.tmp2);
    const double* __restrict dv = w.tmp2;
    double* __restrict grad_r = w.grad_r;
    for (int64_t t = 0; t < 2 * S; ++t) {
      const double g = gn[(t % S) * s.n_radial + i];
      if (g == 0.0) continue;
#pragma omp simd
      for (int64_t j = w.seg[t]; j < w.seg[t + 1]; ++j) grad_r[j] += g * dv[j];
    }
  }
  {
    const double *__restrict x = w.x, *__restrict y = w.y, *__restrict z = w.z;
    const double *__restrict inv_r = w.inv_r, *__restrict grad_r = w.grad_r;
    double *__restrict gx = w.gx, *__restrict gy = w.gy, *__restrict gz = w.gz;
#pragma omp simd
    for (int64_t j = 0; j < n_total; ++j) {
      const double c = grad_r[j] * inv_r[j];
      gx[j] = c * x[j];
      gy[j] = c * y[j];
      gz[j] = c * z[j];
    }
  }
  const double* ga = gn + s.radial_width;  // incoming gradient of the angular sums x norm
  // the same times d/dcos of the powers over base^(e-1), for every species pair
  const int64_t n_ang = s.width - s.radial_width;
  w.g_dpw.resize(n_ang);
  for (int64_t i = 0; i < n_ang && !s.pow2_all; i += Z)
    for (int64_t q = 0; q < Z; ++q) w.g_dpw[i + q] = ga[i + q] * s.dpw_scale[q];
  // power-of-two path: the same by (species pair, lambda, ladder level, part), see grad_pow2
  const int64_t levels = s.pow2_top + 1, level_block = (int64_t)s.n_lambda * levels * P;
  if (s.pow2_all && P) {
    const int64_t n_pairs_sp = n_ang / (P * Z);
    w.g_level.assign(n_pairs_sp * 2 * level_block, 0.0);
    for (int64_t pi = 0; pi < n_pairs_sp; ++pi)
      for (int l = 0; l < s.n_lambda; ++l)
        for (int64_t b = 0; b < levels; ++b) {
          const int q = s.level_q[l][b];
          if (q < 0) continue;
          double* row = w.g_level.data() + pi * 2 * level_block + (l * levels + b) * P;
          for (int64_t p = 0; p < P; ++p) {
            row[p] = ga[pi * P * Z + p * Z + q];
            row[level_block + p] = row[p] * s.dpw_scale[q];
          }
        }
  }
  for (int64_t k = 1; k < n_in && P; ++k) {
    if (w.src[k] < 0) continue;  // padding
    const int64_t m = round_up(k);
    triplets(s, w, k, m, true, !s.pow2_all);
    const int64_t sk = w.sp[k];
    double *__restrict gcos = w.gcos, *__restrict grj = w.grj, *__restrict grk = w.grk,
                       *__restrict grjk = w.grjk;
#pragma omp simd
    for (int64_t j = 0; j < m; ++j) gcos[j] = grj[j] = grk[j] = grjk[j] = 0.0;
    // gradients with respect to cos, r_j, r_k, r_jk, per species segment of j
    for (int64_t t = 0; t < S; ++t) {
      const int64_t j0 = w.seg[t], j1 = std::min<int64_t>(w.seg[t + 1], m);
      if (j1 <= j0) continue;
      const int64_t pair_index = s.pair_table[t * S + sk], offset = pair_index * P * Z;
      const double* gp = ga + offset;
      const double* gd = w.g_dpw.data() + offset;
      const double* lw = s.pow2_all ? w.g_level.data() + pair_index * 2 * level_block : nullptr;
      const double* ld = lw ? lw + level_block : nullptr;
      for (int64_t p0 = 0; p0 < P && s.pow2_all; p0 += 4) {
        switch (std::min<int64_t>(P - p0, 4)) {
          case 1: grad_pow2_l<1>(s, w, lw, ld, p0, k, j0, j1); break;
          case 2: grad_pow2_l<2>(s, w, lw, ld, p0, k, j0, j1); break;
          case 3: grad_pow2_l<3>(s, w, lw, ld, p0, k, j0, j1); break;
          default: grad_pow2_l<4>(s, w, lw, ld, p0, k, j0, j1); break;
        }
      }
      for (int64_t p0 = 0; p0 < P && !s.pow2_all; p0 += 4) {
        switch (std::min<int64_t>(P - p0, 4)) {
          case 1: grad_parts<1>(s, w, gp, gd, p0, k, j0, j1); break;
          case 2: grad_parts<2>(s, w, gp, gd, p0, k, j0, j1); break;
          case 3: grad_parts<3>(s, w, gp, gd, p0, k, j0, j1); break;
          default: grad_parts<4>(s, w, gp, gd, p0, k, j0, j1); break;
        }
      }
    }
    for (int64_t j = k; j < m; ++j) gcos[j] = grj[j] = grk[j] = grjk[j] = 0.0;  // not triplets
    // chain rule to the pair vectors v_j, v_k
    const double xk = w.x[k], yk = w.y[k], zk = w.z[k], inv_rk = w.inv_r[k];
    const double *__restrict x = w.x, *__restrict y = w.y, *__restrict z = w.z;
    const double *__restrict inv_r = w.inv_r, *__restrict cos_t = w.cos_t;
    const double *__restrict dx = w.dx, *__restrict dy = w.dy, *__restrict dz = w.dz;
    const double* __restrict inv_rjk = w.inv_rjk;
    double *__restrict gx = w.gx, *__restrict gy = w.gy, *__restrict gz = w.gz;
    double sx = 0.0, sy = 0.0, sz = 0.0;
    if (!s.n_narrow) {  // no R_jk terms
#pragma omp simd reduction(+ : sx, sy, sz)
      for (int64_t j = 0; j < m; ++j) {
        const double ij = inv_r[j];
        const double cj = grj[j] * ij - gcos[j] * cos_t[j] * ij * ij;
        const double ck = grk[j] * inv_rk - gcos[j] * cos_t[j] * inv_rk * inv_rk;
        const double cx = gcos[j] * ij * inv_rk;
        gx[j] += cj * x[j] + cx * xk;
        gy[j] += cj * y[j] + cx * yk;
        gz[j] += cj * z[j] + cx * zk;
        sx += ck * xk + cx * x[j];
        sy += ck * yk + cx * y[j];
        sz += ck * zk + cx * z[j];
      }
    } else {
#pragma omp simd reduction(+ : sx, sy, sz)
      for (int64_t j = 0; j < m; ++j) {
        const double ij = inv_r[j];
        const double cj = grj[j] * ij - gcos[j] * cos_t[j] * ij * ij;
        const double ck = grk[j] * inv_rk - gcos[j] * cos_t[j] * inv_rk * inv_rk;
        const double cx = gcos[j] * ij * inv_rk;
        const double cjk = grjk[j] * inv_rjk[j];
        gx[j] += cj * x[j] + cx * xk - cjk * dx[j];
        gy[j] += cj * y[j] + cx * yk - cjk * dy[j];
        gz[j] += cj * z[j] + cx * zk - cjk * dz[j];
        sx += ck * xk + cx * x[j] + cjk * dx[j];
        sy += ck * yk + cx * y[j] + cjk * dy[j];
        sz += ck * zk + cx * z[j] + cjk * dz[j];
      }
    }
    w.gx[k] += sx;
    w.gy[k] += sy;
    w.gz[k] += sz;
  }
  for (int64_t j = 0; j < n_total; ++j) {
    if (w.src[j] < 0) continue;
    T* row = grad_vec + 3 * w.src[j];
    row[0] = (T)w.gx[j];
    row[1] = (T)w.gy[j];
    row[2] = (T)w.gz[j];
  }
  for (int64_t i = 0; i < n; ++i)  // pairs beyond every cutoff: zero gradient
    if (w.bucket[i] < 0) std::fill(grad_vec + 3 * rows[i], grad_vec + 3 * rows[i] + 3, T(0));
}

// pairs grouped by centre: order (P) and the start of each centre's run (n_atoms + 1)
void group_by_centre(const torch::Tensor& centers, int64_t n_atoms, std::vector<int64_t>& order,
                     std::vector<int64_t>& start) {
  const int64_t n_pairs = centers.size(0);
  const int64_t* c = centers.data_ptr<int64_t>();
  start.assign(n_atoms + 1, 0);
  for (int64_t i = 0; i < n_pairs; ++i) {
    TORCH_CHECK(c[i] >= 0 && c[i] < n_atoms, "ACSF kernel: centre index out of range");
    ++start[c[i] + 1];
  }
  for (int64_t a = 0; a < n_atoms; ++a) start[a + 1] += start[a];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  order.resize(n_pairs);
  for (int64_t i = 0; i < n_pairs; ++i) order[fill[c[i]]++] = i;
}

void check_inputs(const torch::Tensor& vec, const torch::Tensor& centers,
                  const torch::Tensor& species) {
  TORCH_CHECK(vec.dim() == 2 && vec.size(1) == 3 && vec.is_contiguous(), "vec must be (P, 3)");
  TORCH_CHECK(centers.scalar_type() == torch::kInt64 && centers.is_contiguous());
  TORCH_CHECK(species.scalar_type() == torch::kInt64 && species.is_contiguous());
  TORCH_CHECK(centers.size(0) == vec.size(0) && species.size(0) == vec.size(0));
}

}  // namespace

// Symmetry-function sums (n_atoms, width): radial block [species][shape], then angular block
// [species pair][part][(zeta, lambda)], for the pair vectors `vec` (P, 3) of centres `centers`
// with neighbour species `species`.
torch::Tensor acsf_forward(torch::Tensor vec, torch::Tensor centers, torch::Tensor species,
                           int64_t n_atoms, torch::Tensor radial_params, torch::Tensor part_params,
                           int64_t n_narrow, torch::Tensor zl_params, torch::Tensor pair_table) {
  check_inputs(vec, centers, species);
  const Setup s = make_setup(radial_params, part_params, n_narrow, zl_params, pair_table);
  std::vector<int64_t> order, start;
  group_by_centre(centers, n_atoms, order, start);
  auto out = torch::zeros({n_atoms, s.width}, vec.options());
  AT_DISPATCH_FLOATING_TYPES(vec.scalar_type(), "acsf_forward", [&] {
    const scalar_t* v = vec.data_ptr<scalar_t>();
    const int64_t* sp = species.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n_atoms, 8, [&](int64_t a0, int64_t a1) {
      Scratch w;
      std::vector<double> acc(s.width);
      std::vector<v4> lanes(s.width - s.radial_width);
      for (int64_t a = a0; a < a1; ++a) {
        const int64_t n = start[a + 1] - start[a];
        if (n == 0) continue;
        std::fill(acc.begin(), acc.end(), 0.0);
        centre_forward<scalar_t>(s, v, sp, order.data() + start[a], n, w, acc.data(), lanes);
        for (int64_t i = 0; i < s.width; ++i) o[a * s.width + i] = (scalar_t)acc[i];
      }
    });
  });
  return out;
}

// Gradient (P, 3) of sum(grad_out * acsf_forward(...)) with respect to vec.
torch::Tensor acsf_backward(torch::Tensor vec, torch::Tensor centers, torch::Tensor species,
                            int64_t n_atoms, torch::Tensor radial_params,
                            torch::Tensor part_params, int64_t n_narrow, torch::Tensor zl_params,
                            torch::Tensor pair_table, torch::Tensor grad_out) {
  check_inputs(vec, centers, species);
  const Setup s = make_setup(radial_params, part_params, n_narrow, zl_params, pair_table);
  TORCH_CHECK(grad_out.size(0) == n_atoms && grad_out.size(1) == s.width && grad_out.is_contiguous());
  std::vector<int64_t> order, start;
  group_by_centre(centers, n_atoms, order, start);
  // every row is written: by its centre (a pair beyond every cutoff gets zeros)
  auto grad_vec = torch::empty_like(vec);
  AT_DISPATCH_FLOATING_TYPES(vec.scalar_type(), "acsf_backward", [&] {
    const scalar_t* v = vec.data_ptr<scalar_t>();
    const int64_t* sp = species.data_ptr<int64_t>();
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    scalar_t* gv = grad_vec.data_ptr<scalar_t>();
    at::parallel_for(0, n_atoms, 8, [&](int64_t a0, int64_t a1) {
      Scratch w;
      std::vector<double> gn(s.width);
      for (int64_t a = a0; a < a1; ++a) {
        const int64_t n = start[a + 1] - start[a];
        if (n == 0) continue;
        const scalar_t* g = go + a * s.width;
        for (int64_t i = 0; i < s.radial_width; ++i) gn[i] = (double)g[i];
        for (int64_t i = s.radial_width; i < s.width; i += s.n_zl)
          for (int64_t q = 0; q < s.n_zl; ++q) gn[i + q] = (double)g[i + q] * s.norm[q];
        centre_backward<scalar_t>(s, v, sp, order.data() + start[a], n, w, gn.data(), gv);
      }
    });
  });
  return grad_vec;
}

// Pair vectors r_j - r_i + shift . cell (P, 3) of one structure: positions (N, 3), cell (3, 3),
// integer shifts (P, 3).
torch::Tensor pair_vectors_forward(torch::Tensor positions, torch::Tensor cell,
                                   torch::Tensor centers, torch::Tensor neighbors,
                                   torch::Tensor shifts) {
  TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 3 && positions.is_contiguous());
  TORCH_CHECK(cell.sizes() == torch::IntArrayRef({3, 3}) && cell.is_contiguous() &&
              cell.scalar_type() == positions.scalar_type());
  for (const auto* t : {&centers, &neighbors, &shifts})
    TORCH_CHECK(t->scalar_type() == torch::kInt64 && t->is_contiguous());
  const int64_t n_pairs = centers.size(0), n_atoms = positions.size(0);
  TORCH_CHECK(neighbors.size(0) == n_pairs && shifts.size(0) == n_pairs && shifts.size(1) == 3);
  auto vec = torch::empty({n_pairs, 3}, positions.options());
  AT_DISPATCH_FLOATING_TYPES(positions.scalar_type(), "pair_vectors_forward", [&] {
    const scalar_t* pos = positions.data_ptr<scalar_t>();
    const scalar_t* h = cell.data_ptr<scalar_t>();
    const int64_t *c = centers.data_ptr<int64_t>(), *n = neighbors.data_ptr<int64_t>();
    const int64_t* sh = shifts.data_ptr<int64_t>();
    scalar_t* v = vec.data_ptr<scalar_t>();
    at::parallel_for(0, n_pairs, 4096, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t i = c[p], j = n[p];
        TORCH_CHECK(i >= 0 && i < n_atoms && j >= 0 && j < n_atoms, "pair index out of range");
        const scalar_t s0 = (scalar_t)sh[3 * p], s1 = (scalar_t)sh[3 * p + 1],
                       s2 = (scalar_t)sh[3 * p + 2];
        for (int x = 0; x < 3; ++x)
          v[3 * p + x] = pos[3 * j + x] - pos[3 * i + x] + s0 * h[x] + s1 * h[3 + x] +
                         s2 * h[6 + x];
      }
    });
  });
  return vec;
}

// Gradients (positions (N, 3), cell (3, 3)) of sum(grad_vec * pair_vectors_forward(...)).
std::vector<torch::Tensor> pair_vectors_backward(torch::Tensor grad_vec, torch::Tensor centers,
                                                 torch::Tensor neighbors, torch::Tensor shifts,
                                                 int64_t n_atoms) {
  TORCH_CHECK(grad_vec.dim() == 2 && grad_vec.size(1) == 3 && grad_vec.is_contiguous());
  const int64_t n_pairs = centers.size(0);
  auto grad_pos = torch::zeros({n_atoms, 3}, grad_vec.options());
  auto grad_cell = torch::zeros({3, 3}, grad_vec.options());
  AT_DISPATCH_FLOATING_TYPES(grad_vec.scalar_type(), "pair_vectors_backward", [&] {
    const scalar_t* g = grad_vec.data_ptr<scalar_t>();
    const int64_t *c = centers.data_ptr<int64_t>(), *n = neighbors.data_ptr<int64_t>();
    const int64_t* sh = shifts.data_ptr<int64_t>();
    scalar_t* gp = grad_pos.data_ptr<scalar_t>();
    double gh[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t p = 0; p < n_pairs; ++p) {
      const int64_t i = c[p], j = n[p];
      for (int x = 0; x < 3; ++x) {
        const scalar_t value = g[3 * p + x];
        gp[3 * j + x] += value;
        gp[3 * i + x] -= value;
        for (int k = 0; k < 3; ++k) gh[3 * k + x] += (double)sh[3 * p + k] * (double)value;
      }
    }
    scalar_t* out = grad_cell.data_ptr<scalar_t>();
    for (int k = 0; k < 9; ++k) out[k] = (scalar_t)gh[k];
  });
  return {grad_pos, grad_cell};
}

// Training with cached descriptors. A minibatch is given per structure: Jacobians jac (P_s, 3, F)
// of the features with respect to the pair vectors, the pairs' centres (local atom indices) and
// where the structure's atoms start (atom_offsets) in the minibatch's n_atoms atoms; its pairs
// follow each other. Checks all of it; returns where each structure's pairs start (S + 1).
std::vector<int64_t> minibatch_pair_offsets(const std::vector<torch::Tensor>& jacs,
                                            const std::vector<torch::Tensor>& centers,
                                            const std::vector<int64_t>& atom_offsets,
                                            int64_t n_atoms, int64_t n_features,
                                            torch::ScalarType dtype) {
  const int64_t n_structures = (int64_t)jacs.size();
  TORCH_CHECK((int64_t)centers.size() == n_structures &&
              (int64_t)atom_offsets.size() == n_structures);
  std::vector<int64_t> pair_offsets(n_structures + 1, 0);
  for (int64_t s = 0; s < n_structures; ++s) {
    const auto& jac = jacs[s];
    TORCH_CHECK(jac.dim() == 3 && jac.size(1) == 3 && jac.size(2) == n_features &&
                jac.is_contiguous() && jac.scalar_type() == dtype);
    TORCH_CHECK(centers[s].scalar_type() == torch::kInt64 && centers[s].is_contiguous() &&
                centers[s].size(0) == jac.size(0));
    const int64_t* c = centers[s].data_ptr<int64_t>();
    for (int64_t p = 0; p < jac.size(0); ++p)
      TORCH_CHECK(c[p] >= 0 && atom_offsets[s] + c[p] < n_atoms, "centre index out of range");
    pair_offsets[s + 1] = pair_offsets[s] + jac.size(0);
  }
  return pair_offsets;
}

// d_vec[p, x] = sum_f d_features[centre(p), f] * jac[p, x, f] (P, 3): the derivative of the
// energy with respect to the pair vectors, from d_features = dE/dG (n_atoms, F). One pass over
// the Jacobians, no gathered (P, F) copy; parallel over structures.
torch::Tensor jacobian_contract(std::vector<torch::Tensor> jacs, std::vector<torch::Tensor> centers,
                                std::vector<int64_t> atom_offsets, torch::Tensor d_features) {
  TORCH_CHECK(d_features.dim() == 2 && d_features.is_contiguous());
  const int64_t n_structures = (int64_t)jacs.size(), F = d_features.size(1);
  const auto pair_offsets = minibatch_pair_offsets(jacs, centers, atom_offsets, d_features.size(0),
                                                   F, d_features.scalar_type());
  auto out = torch::empty({pair_offsets[n_structures], 3}, d_features.options());
  AT_DISPATCH_FLOATING_TYPES(d_features.scalar_type(), "jacobian_contract", [&] {
    const scalar_t* df = d_features.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n_structures, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const scalar_t* J = jacs[s].data_ptr<scalar_t>();
        const int64_t* c = centers[s].data_ptr<int64_t>();
        for (int64_t p = 0; p < jacs[s].size(0); ++p) {
          const scalar_t* a = df + (atom_offsets[s] + c[p]) * F;
          const scalar_t* j = J + p * 3 * F;
          scalar_t s_0 = 0, s_1 = 0, s_2 = 0;
          _Pragma("omp simd reduction(+ : s_0, s_1, s_2)")
          for (int64_t f = 0; f < F; ++f) {
            s_0 += a[f] * j[f];
            s_1 += a[f] * j[F + f];
            s_2 += a[f] * j[2 * F + f];
          }
          scalar_t* row = o + 3 * (pair_offsets[s] + p);
          row[0] = s_0;
          row[1] = s_1;
          row[2] = s_2;
        }
      }
    });
  });
  return out;
}

// Its adjoint: grad_features[centre(p), f] += sum_x grad_vec[p, x] * jac[p, x, f] (n_atoms, F).
torch::Tensor jacobian_contract_backward(std::vector<torch::Tensor> jacs,
                                         std::vector<torch::Tensor> centers,
                                         std::vector<int64_t> atom_offsets, torch::Tensor grad_vec,
                                         int64_t n_atoms) {
  TORCH_CHECK(grad_vec.dim() == 2 && grad_vec.size(1) == 3 && grad_vec.is_contiguous());
  TORCH_CHECK(!jacs.empty());
  const int64_t n_structures = (int64_t)jacs.size(), F = jacs[0].size(2);
  const auto pair_offsets =
      minibatch_pair_offsets(jacs, centers, atom_offsets, n_atoms, F, grad_vec.scalar_type());
  TORCH_CHECK(grad_vec.size(0) == pair_offsets[n_structures]);
  auto grad = torch::zeros({n_atoms, F}, grad_vec.options());
  AT_DISPATCH_FLOATING_TYPES(grad_vec.scalar_type(), "jacobian_contract_backward", [&] {
    const scalar_t* g = grad_vec.data_ptr<scalar_t>();
    scalar_t* out = grad.data_ptr<scalar_t>();
    // structures own disjoint atom rows, so they can run in parallel
    at::parallel_for(0, n_structures, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s) {
        const scalar_t* J = jacs[s].data_ptr<scalar_t>();
        const int64_t* c = centers[s].data_ptr<int64_t>();
        for (int64_t p = 0; p < jacs[s].size(0); ++p) {
          const scalar_t* gp = g + 3 * (pair_offsets[s] + p);
          const scalar_t g0 = gp[0], g1 = gp[1], g2 = gp[2];
          const scalar_t* j = J + p * 3 * F;
          scalar_t* row = out + (atom_offsets[s] + c[p]) * F;
          _Pragma("omp simd")
          for (int64_t f = 0; f < F; ++f) row[f] += g0 * j[f] + g1 * j[F + f] + g2 * j[2 * F + f];
        }
      }
    });
  });
  return grad;
}
