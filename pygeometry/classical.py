"""Classical geometric pose baseline with OpenCV: feature matches + PnP with the target depth, or the essential
matrix with the scale from the target depth (no caffe import).

Convention: the pose estimated is src_T_tgt (X_src = R X_tgt + t), as everywhere in pygeometry. Images are RGB
(3, H, W) in [0, 1], depth (1, H, W) is z in metres (<= 0 unknown), K = [fx, fy, cx, cy].

Pipeline (per pair):
    1. Grey uint8 images; SIFT (default, sub-pixel keypoints) or ORB features; brute-force k=2 matching with
       Lowe's ratio test (ratio 0.8).
    2. "pnp": each matched target keypoint with a reliable depth (the 4 pixels around it have depth > 0 and
       agree within 5%, so no keypoint on a depth edge) is back-projected into the target camera,
       X_tgt = d [(u - cx)/fx, (v - cy)/fy, 1] (bilinear depth). cv2.solvePnPRansac(X_tgt, source keypoints)
       gives the transform from the target camera (the "object" frame) into the source camera, i.e. src_T_tgt
       directly; it is refined with cv2.solvePnPRefineLM on the RANSAC inliers.
       "essential": cv2.findEssentialMat(target points, source points; LMedS, which was the most stable of
       RANSAC/MAGSAC/LMedS on rendered pairs) + cv2.recoverPose give R and a unit t with X_src = R X_tgt + s t;
       (R, t) is then refined on the inliers by minimising the Sampson error (refine_essential). The scale s is the median over the inliers with reliable depth of
       d_depth / z_triangulated, where z_triangulated is the target-camera depth of the point triangulated with
       the unit baseline (cv2.triangulatePoints). A (near) pure rotation leaves the direction of t undefined:
       the essential matrix cannot recover it; such pairs show as large errors, not as failures.
    3. Status per pair, reported honestly: "ok", "too_few_matches" (fewer than min_matches after the ratio
       test), "too_few_depth" (too few matches with reliable depth), "ransac_failed" (OpenCV found no model or
       fewer than min_inliers inliers), "degenerate" (the estimate puts more than 10% of its inliers behind the
       source camera, or changes their median depth by more than MAX_DEPTH_RATIO: see plausible()), "no_scale" (essential: fewer than min_scale_points inliers with depth triangulated in
       front of both cameras with min_parallax_px of parallax; short baselines end here). A failed pair gets the identity pose (for the error statistics with fallback) and
       is counted separately.
"""
from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

METHODS = ("pnp", "essential")
FEATURES = ("sift", "orb")
MAX_DEPTH_RATIO = 3.0
STATUSES = ("ok", "too_few_matches", "too_few_depth", "ransac_failed", "no_scale", "degenerate")


@dataclasses.dataclass
class ClassicalResult:
    """Outcome of one pair.

    Attributes:
        src_T_tgt: (4, 4) float64 estimate (the identity when status != "ok").
        status: one of STATUSES.
        matches: matches after the ratio test.
        inliers: RANSAC inliers (0 on failure before RANSAC).
        time_s: wall time of the pair (features, matching, estimation).
    """

    src_T_tgt: np.ndarray
    status: str
    matches: int = 0
    inliers: int = 0
    time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def to_gray_u8(image: np.ndarray) -> np.ndarray:
    """RGB (3, H, W) float in [0, 1] -> (H, W) uint8 grey."""
    rgb = np.clip(np.transpose(np.asarray(image, np.float32), (1, 2, 0)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _detector(features: str, n_features: int):
    if features == "sift":
        return cv2.SIFT_create(nfeatures=n_features), cv2.NORM_L2
    if features == "orb":
        return cv2.ORB_create(nfeatures=n_features, edgeThreshold=15, patchSize=15, fastThreshold=10), cv2.NORM_HAMMING
    raise ValueError(f"features must be one of {FEATURES}, got {features!r}")


def match_features(src_gray, tgt_gray, features="sift", ratio=0.8, n_features=3000):
    """Matched keypoints (target (M, 2), source (M, 2)) float64 pixel coordinates (x, y), pixel centres at
    integers (OpenCV's keypoint convention), after Lowe's ratio test."""
    det, norm = _detector(features, n_features)
    kp_t, des_t = det.detectAndCompute(tgt_gray, None)
    kp_s, des_s = det.detectAndCompute(src_gray, None)
    if des_t is None or des_s is None or len(kp_t) < 2 or len(kp_s) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pairs = cv2.BFMatcher(norm).knnMatch(des_t, des_s, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    pts_t = np.array([kp_t[m.queryIdx].pt for m in good], np.float64).reshape(-1, 2)
    pts_s = np.array([kp_s[m.trainIdx].pt for m in good], np.float64).reshape(-1, 2)
    return pts_t, pts_s


def sample_depth(depth: np.ndarray, pts: np.ndarray, max_rel_spread: float = 0.05):
    """Bilinear depth at sub-pixel points, reliable only where the 4 neighbours are > 0 and agree.

    Args:
        depth: (H, W) z in metres; pts: (M, 2) (x, y).
        max_rel_spread: max/min of the 4 neighbours must be <= 1 + this.

    Returns:
        (values (M,), ok (M,) bool); values are 0 where not ok.
    """
    H, W = depth.shape
    x, y = pts[:, 0], pts[:, 1]
    x0 = np.clip(np.floor(x).astype(np.int64), 0, W - 2)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, H - 2)
    a, b = np.clip(x - x0, 0, 1), np.clip(y - y0, 0, 1)
    d00, d01, d10, d11 = depth[y0, x0], depth[y0, x0 + 1], depth[y0 + 1, x0], depth[y0 + 1, x0 + 1]
    stack = np.stack([d00, d01, d10, d11])
    lo, hi = stack.min(axis=0), stack.max(axis=0)
    ok = (lo > 0) & (hi <= lo * (1 + max_rel_spread)) & (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    val = (1 - b) * ((1 - a) * d00 + a * d01) + b * ((1 - a) * d10 + a * d11)
    return np.where(ok, val, 0.0), ok


def _camera_matrix(K):
    fx, fy, cx, cy = np.asarray(K, np.float64).reshape(4)
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])


def backproject(pts: np.ndarray, depth_values: np.ndarray, K) -> np.ndarray:
    """Pixels (M, 2) with depth (M,) -> target-camera points (M, 3)."""
    fx, fy, cx, cy = np.asarray(K, np.float64).reshape(4)
    return np.stack([(pts[:, 0] - cx) / fx, (pts[:, 1] - cy) / fy, np.ones(len(pts))], 1) * depth_values[:, None]


def _transform(R, t):
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, np.float64).reshape(3)
    return T


def _unit_vector(theta, phi):
    return np.array([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])


def refine_essential(pts_t, pts_s, Kmat, R, t):
    """Refine (R, unit t) on the inliers by minimising the Sampson epipolar error (Huber loss, about 1 px) with
    scipy.optimize.least_squares over the rotation vector and t in spherical angles (its own numeric Jacobian:
    this is the classical baseline, unrelated to the photometric refinement). Returns (R (3, 3), t (3,))."""
    from scipy.optimize import least_squares

    from .kernels.se3 import hat

    Ki = np.linalg.inv(Kmat)
    x1 = np.c_[pts_t, np.ones(len(pts_t))] @ Ki.T
    x2 = np.c_[pts_s, np.ones(len(pts_s))] @ Ki.T

    def sampson(p):
        E = hat(_unit_vector(p[3], p[4])) @ cv2.Rodrigues(p[:3])[0]
        Ex1, Etx2 = x1 @ E.T, x2 @ E
        den = Ex1[:, 0] ** 2 + Ex1[:, 1] ** 2 + Etx2[:, 0] ** 2 + Etx2[:, 1] ** 2
        return np.sum(x2 * Ex1, axis=1) / np.sqrt(np.maximum(den, 1e-30))

    t = t / np.linalg.norm(t)
    p0 = np.r_[cv2.Rodrigues(R)[0].ravel(), np.arccos(np.clip(t[2], -1, 1)), np.arctan2(t[1], t[0])]
    sol = least_squares(sampson, p0, loss="huber", f_scale=1.0 / Kmat[0, 0])
    if not np.all(np.isfinite(sol.x)):
        return R, t
    return cv2.Rodrigues(sol.x[:3])[0], _unit_vector(sol.x[3], sol.x[4])


def plausible(X_tgt: np.ndarray, src_T_tgt: np.ndarray, max_depth_ratio: float = MAX_DEPTH_RATIO) -> bool:
    """Sanity check of an estimate on its inlier points X_tgt (M, 3): at least 90% of them in front of the source
    camera (PnP does not check cheirality), and their median depth ratio z_src / z_tgt within
    [1 / max_depth_ratio, max_depth_ratio] (two views that share features see them at similar distances; a
    consensus that moves the camera tens of metres away, all points projecting into a few pixels, is not a pose)."""
    z_tgt = X_tgt[:, 2]
    z_src = X_tgt @ src_T_tgt[2, :3] + src_T_tgt[2, 3]
    if len(z_tgt) == 0 or np.mean(z_src > 0) < 0.9:
        return False
    ratio = float(np.median(z_src / z_tgt))
    return 1 / max_depth_ratio <= ratio <= max_depth_ratio


def estimate_pose(src, tgt, tgt_depth, K, method="pnp", features="sift", ratio=0.8, min_matches=12,
                  min_inliers=10, reprojection_px=2.0, min_parallax_px=2.0, min_scale_points=5,
                  seed=0) -> ClassicalResult:
    """Estimate src_T_tgt of one pair (see the module docstring).

    Args:
        src, tgt: (3, H, W) RGB in [0, 1]; tgt_depth: (1, H, W) or (H, W); K: (4,) [fx, fy, cx, cy].
        method: "pnp" or "essential".
        features: "sift" or "orb".
        ratio: Lowe's ratio test threshold.
        min_matches, min_inliers: below these the pair fails (status says why).
        reprojection_px: PnP RANSAC threshold in pixels (the essential matrix uses LMedS, no threshold).
        min_parallax_px, min_scale_points: the essential variant's scale needs at least min_scale_points inliers
            with depth, in front of both cameras, whose viewing rays differ by more than min_parallax_px pixels.
        seed: OpenCV's RNG seed (RANSAC), for repeatable results.

    Returns:
        ClassicalResult.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    t0 = time.perf_counter()
    cv2.setRNGSeed(seed)
    depth = np.asarray(tgt_depth, np.float64).reshape(np.shape(tgt_depth)[-2:])
    Kmat = _camera_matrix(K)
    pts_t, pts_s = match_features(to_gray_u8(src), to_gray_u8(tgt), features, ratio)
    n = len(pts_t)

    def result(status, T=None, inliers=0):
        return ClassicalResult(np.eye(4) if T is None else T, status, n, inliers, time.perf_counter() - t0)

    if n < min_matches:
        return result("too_few_matches")
    d, has_depth = sample_depth(depth, pts_t)
    if method == "pnp":
        if has_depth.sum() < min_matches:
            return result("too_few_depth")
        X = backproject(pts_t[has_depth], d[has_depth], K)
        img = pts_s[has_depth]
        ok, rvec, tvec, inl = cv2.solvePnPRansac(X, img, Kmat, None, iterationsCount=2000,
                                                 reprojectionError=reprojection_px, confidence=0.999,
                                                 flags=cv2.SOLVEPNP_EPNP)
        if not ok or inl is None or len(inl) < min_inliers:
            return result("ransac_failed", inliers=0 if inl is None else len(inl))
        inl = inl.ravel()
        rvec, tvec = cv2.solvePnPRefineLM(X[inl], img[inl], Kmat, None, rvec, tvec)
        T = _transform(cv2.Rodrigues(rvec)[0], tvec)
        if not plausible(X[inl], T):
            return result("degenerate", inliers=len(inl))
        return result("ok", T, len(inl))
    E, mask = cv2.findEssentialMat(pts_t, pts_s, Kmat, method=cv2.LMEDS, prob=0.9999)
    if E is None or E.shape[0] < 3 or mask is None or int(mask.sum()) < min_inliers:
        return result("ransac_failed", inliers=0 if mask is None else int(mask.sum()))
    # distanceThresh: OpenCV's default (50 baselines) drops distant points, i.e. most points of a short baseline.
    n_good, R, t, mask_pose, _ = cv2.recoverPose(E[:3], pts_t, pts_s, Kmat, distanceThresh=1e9, mask=mask.copy())
    inl = mask_pose.ravel() > 0
    if n_good < min_inliers:
        return result("ransac_failed", inliers=int(n_good))
    R, t = refine_essential(pts_t[inl], pts_s[inl], Kmat, R, t.ravel())
    sel = inl & has_depth
    if sel.sum() == 0:
        return result("no_scale", inliers=int(inl.sum()))
    P1 = Kmat @ np.hstack([np.eye(3), np.zeros((3, 1))])
    P2 = Kmat @ np.hstack([R, t.reshape(3, 1)])
    Xh = cv2.triangulatePoints(P1, P2, pts_t[sel].T, pts_s[sel].T)
    X_tgt = (Xh[:3] / Xh[3]).T
    z_tri = X_tgt[:, 2]
    z_src = X_tgt @ R[2] + t.ravel()[2]
    # Parallax: angle between the two viewing rays of a point (camera centres 0 and -R^T t). Points seen under
    # less than min_parallax_px pixels of parallax have no usable triangulated depth.
    centre_src = -R.T @ t.ravel()
    ray_t, ray_s = X_tgt, X_tgt - centre_src
    cos = np.sum(ray_t * ray_s, 1) / np.maximum(np.linalg.norm(ray_t, axis=1) * np.linalg.norm(ray_s, axis=1), 1e-30)
    parallax = np.arccos(np.clip(cos, -1, 1))
    front = (z_tri > 0) & (z_src > 0) & np.isfinite(z_tri) & (parallax > min_parallax_px / Kmat[0, 0])
    if front.sum() < min_scale_points:
        return result("no_scale", inliers=int(inl.sum()))
    scale = float(np.median(d[sel][front] / z_tri[front]))
    T = _transform(R, scale * t.ravel())
    if not plausible(backproject(pts_t[sel][front], d[sel][front], K), T):
        return result("degenerate", inliers=int(inl.sum()))
    return result("ok", T, int(inl.sum()))


def classical_baseline(src, tgt, tgt_depth, K, method="pnp", features="sift", progress=None, **kw):
    """estimate_pose for every pair of arrays src, tgt (N, 3, H, W), tgt_depth (N, 1, H, W), K (N, 4) or (4,).

    Args:
        progress: optional callable wrapping the range of pairs (e.g. tqdm).

    Returns:
        list of N ClassicalResult.
    """
    n = len(src)
    K = np.broadcast_to(np.asarray(K, np.float64).reshape(-1, 4), (n, 4))
    idx = range(n) if progress is None else progress(range(n))
    return [estimate_pose(src[i], tgt[i], tgt_depth[i], K[i], method, features, **kw) for i in idx]


def failure_counts(results) -> dict:
    """{status: count} over STATUSES, for the report."""
    counts = {s: 0 for s in STATUSES}
    for r in results:
        counts[r.status] += 1
    return counts
