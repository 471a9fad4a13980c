/**
 * Names of the fused kernels, in one place: the fused-op files register them, the library
 * checks for them (`hasKernels`), tests and benchmarks call them. tfjs' own kernels keep their
 * names (`tf.BatchMatMul`, ...).
 */

/** Sparse cross-entropy per row from logits and int targets (lib/kernels/fused/cross_entropy.ts). */
export const SPARSE_XENT = "LlmSparseXent";
/** Its gradient with respect to the logits. */
export const SPARSE_XENT_GRAD = "LlmSparseXentGrad";
/** One AdamW step of a parameter and its moments (lib/kernels/fused/adamw.ts). */
export const ADAMW = "LlmAdamW";
/** LayerNorm forward: y, mean, rstd (lib/kernels/fused/layernorm.ts). */
export const LAYER_NORM = "LlmLayerNorm";
/** LayerNorm backward: dx, dscale, dshift. */
export const LAYER_NORM_GRAD = "LlmLayerNormGrad";
/** GELU (tanh approximation) forward: y and the tanh it used (lib/kernels/fused/gelu.ts). */
export const GELU = "LlmGelu";
/** GELU backward: dx. */
export const GELU_GRAD = "LlmGeluGrad";
/** The dropout mask from a seed (lib/kernels/fused/dropout.ts). */
export const DROPOUT_MASK = "LlmDropoutMask";
/** Causal softmax of attention scores with scale and mask (lib/kernels/fused/causal_softmax.ts). */
export const CAUSAL_SOFTMAX = "LlmCausalSoftmax";
/** Its backward: d(scores) from the weights and d(weights). */
export const CAUSAL_SOFTMAX_GRAD = "LlmCausalSoftmaxGrad";
