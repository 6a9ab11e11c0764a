"""Image-quality and distribution metrics (MS-SSIM, Frechet distance)."""
