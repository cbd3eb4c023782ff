r"""Ours (JAX) vs HF transformers (PyTorch, CPU) on identical random weights.

Part 1, autoregressive decoding: tokens/s of `generate(method="verifier")` and of HF
`T5ForConditionalGeneration.generate` for T5.1.1-small and -base shapes, greedy and sampling
(T = 1, no top-k/top-p on either side), batch 1 and 16, `--input_len` input → `--new_tokens`
new tokens. Both sides emit exactly `--new_tokens` tokens: EOS is banned in ours
(`common.NoEosModel`) and in HF by `min_new_tokens`. The vocabulary is unpadded on both sides
(`real_vocab_size = vocab_size = 32128`), so neither masks padded ids. Greedy outputs are compared
token by token (random weights make near-ties, so float rounding may flip a few argmaxes; the match
is reported, not asserted).

Part 2, speculative decoding at batch 1, greedy: our `spec_decode` vs HF assisted generation
(`assistant_model=`, constant `num_assistant_tokens` = γ and `assistant_confidence_threshold` = 0,
i.e. exactly γ drafts per round like ours; plus a row with HF's defaults: 20 drafts, stopped early
when the assistant's top probability falls below 0.4), with the
same drafter/verifier weights (`common.embedded_pair`: a random small drafter embedded in the
verifier's shape plus noise, which gives a realistic acceptance rate). Each side's speed-up is over
its own autoregressive verifier. Lossless greedy decoding must reproduce the autoregressive output:
asserted for both sides. HF quirk (ENVIRONMENT.md): `decoder_attention_mask=torch.ones(1, 1)`
keeps its encoder-decoder assistant from re-reading the whole prefix. Then our speculative decoding
at larger batches (`--sd_batch_sizes`), which HF assisted generation does not support.

Compilation is excluded (one warm-up call per shape; HF is warmed the same way), ≥ 3 trials,
mean ± std, torch threads = `--torch_threads`.

    JAX_PLATFORMS=cpu python benchmarks/bench_vs_hf.py --out_dir=/tmp/bench
    JAX_PLATFORMS=cpu python benchmarks/bench_vs_hf.py --tiny --out_dir=/tmp/bench_tiny

Smoke mode (`--tiny`): tiny shapes, greedy only, batch 1, SD with γ 3, 8 → 8 tokens, 2 trials,
1 torch thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from absl import logging  # noqa: E402

from spec_cascade_jax.decoding import generate, summarize_stats  # noqa: E402
from spec_cascade_jax.models.t5 import (  # noqa: E402
    T5Config,
    T5Model,
    get_config,
    params_to_hf_state_dict,
)


def parse_args(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    arg = parser.add_argument
    arg(
        "--models",
        type=common.str_list,
        default=["t5_1_1_small", "t5_1_1_base"],
        help="Autoregressive shapes (get_config presets).",
    )
    arg("--batch_sizes", type=common.int_list, default=[1, 16], help="Autoregressive batches.")
    arg(
        "--modes",
        type=common.str_list,
        default=["greedy", "sampling"],
        help="greedy (T=0) and/or sampling (T=1).",
    )
    arg("--input_len", type=int, default=64, help="Encoder input length.")
    arg("--new_tokens", type=int, default=64, help="New tokens per row (EOS banned).")
    arg("--no_sd", dest="sd", action="store_false", help="Skip part 2 (speculative).")
    arg("--sd_drafter", default="t5_1_1_small", help="Speculative drafter shape.")
    arg("--sd_verifier", default="t5_1_1_base", help="Speculative verifier shape.")
    arg("--sd_noise", type=float, default=0.02, help="Relative noise of the embedded verifier.")
    arg(
        "--sd_gammas",
        type=common.int_list,
        default=[3, 5],
        help="γ values (= HF num_assistant_tokens).",
    )
    arg("--sd_batch_sizes", type=common.int_list, default=[8, 32], help="Our SD at larger B.")
    arg("--torch_threads", type=int, default=2, help="torch.set_num_threads.")
    arg("--vocab_size", type=int, default=None, help="Vocabulary override (default 32128).")
    common.add_common_args(parser, "/tmp/bench_vs_hf")
    cfg = vars(parser.parse_args(argv))
    for mode in cfg["modes"]:
        if mode not in ("greedy", "sampling"):
            raise ValueError(f"unknown mode {mode!r}; expected greedy or sampling")
    if cfg.pop("tiny"):
        # Batch 1 and γ 3 everywhere, so that the few programs are shared between the parts
        # (and with `bench_decode --tiny` in the same process); torch on one thread, which a
        # loaded machine does not slow down as much as two spinning OpenMP threads.
        cfg.update(
            models=["tiny"],
            batch_sizes=[1],
            modes=["greedy"],
            input_len=8,
            new_tokens=8,
            sd_drafter="tiny",
            sd_verifier="tiny",
            sd_gammas=[3],
            sd_batch_sizes=[1],
            trials=2,
            torch_threads=1,
        )
    return cfg


# ----------------------------------------------------------------------------------------------
# HF peer.


def hf_model(config: T5Config, params) -> Any:
    """`T5ForConditionalGeneration` holding exactly `params` (float32, eval mode, own lm_head)."""
    hf_config = transformers.T5Config(
        vocab_size=config.vocab_size,
        d_model=config.d_model,
        d_kv=config.d_kv,
        d_ff=config.d_ff,
        num_layers=config.num_encoder_layers,
        num_decoder_layers=config.num_decoder_layers,
        num_heads=config.num_heads,
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        dropout_rate=0.0,
        layer_norm_epsilon=config.layer_norm_epsilon,
        feed_forward_proj=config.feed_forward,
        tie_word_embeddings=config.tie_word_embeddings,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = transformers.T5ForConditionalGeneration(hf_config).eval()
    if not config.tie_word_embeddings:
        # transformers 5.x ties lm_head to `shared` whatever the config says (ENVIRONMENT.md).
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.shared.weight))
    state = {
        k: torch.from_numpy(np.array(v)) for k, v in params_to_hf_state_dict(config, params).items()
    }
    model.load_state_dict(state, strict=True)
    if not config.tie_word_embeddings:
        if model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr():
            raise RuntimeError("HF lm_head is still tied to the input embedding")
        expected = np.asarray(params["decoder"]["logits_dense"]["kernel"]).T
        if not np.array_equal(model.lm_head.weight.detach().numpy(), expected):
            raise RuntimeError("HF lm_head does not hold our logits_dense kernel")
    return model


class CallCounter:
    """Counts forward calls of a torch module (HF verifier rounds, assistant steps)."""

    def __init__(self, module: torch.nn.Module):
        self.count = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.count += 1

    def remove(self) -> None:
        self._handle.remove()


def hf_generate(model, inputs: np.ndarray, new_tokens: int, *, greedy: bool, **kw: Any):
    ids = torch.from_numpy(inputs.astype(np.int64))
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=(ids != 0).long(),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=not greedy,
            num_beams=1,
            **({} if greedy else {"temperature": 1.0, "top_k": 0, "top_p": 1.0}),
            **kw,
        )
    return out[:, 1:].numpy()  # drop the decoder start token


def _match(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Rows equal, and the mean common-prefix length / length."""
    same = a == b
    prefix = np.where(same.all(axis=1), a.shape[1], np.argmin(same, axis=1))
    return {
        "rows_equal": float(np.mean(same.all(axis=1))),
        "prefix_frac": float(np.mean(prefix) / a.shape[1]),
        "tokens_equal": float(np.mean(same)),
    }


# ----------------------------------------------------------------------------------------------
# Part 1: autoregressive.


def _config(name: str, vocab: int | None, tiny_drafter: bool = False) -> T5Config:
    kw: dict[str, Any] = {}
    if name == "tiny" and tiny_drafter:
        kw.update(d_model=16, d_ff=32, num_heads=2, num_encoder_layers=1, num_decoder_layers=1)
    base = get_config(name, **kw)
    v = vocab or base.vocab_size
    return base.replace(vocab_size=v, real_vocab_size=v)


def ours_ar(model, params, inputs, new_tokens, temperature, seed):
    rng = jax.random.PRNGKey(seed)
    ids = jax.block_until_ready(jnp.asarray(inputs))
    return lambda: generate(
        None,
        None,
        model,
        params,
        ids,
        method="verifier",
        temperature=temperature,
        max_decode_len=new_tokens,
        rng=rng,
    )


def part_autoregressive(cfg: dict) -> list[dict]:
    rows = []
    for name in cfg["models"]:
        config = _config(name, cfg["vocab_size"])
        params = T5Model(config).init_params(jax.random.PRNGKey(cfg["seed"]))
        ours = common.NoEosModel(T5Model(config))
        hf = hf_model(config, params)
        for batch in cfg["batch_sizes"]:
            inputs = common.random_inputs(batch, cfg["input_len"], config.real_vocab_size, 1)
            n = batch * cfg["new_tokens"]
            for mode in cfg["modes"]:
                greedy = mode == "greedy"
                logging.info("AR %s batch %d %s", name, batch, mode)
                t_ours, out = common.time_call(
                    ours_ar(ours, params, inputs, cfg["new_tokens"], 0.0 if greedy else 1.0, 0),
                    trials=cfg["trials"],
                )
                torch.manual_seed(0)
                t_hf, hf_out = common.time_host_call(
                    lambda: hf_generate(hf, inputs, cfg["new_tokens"], greedy=greedy),  # noqa: B023
                    trials=cfg["trials"],
                )
                if hf_out.shape != (batch, cfg["new_tokens"]) or np.any(hf_out == 1):
                    raise RuntimeError(f"HF emitted {hf_out.shape} tokens or an EOS")
                if int(np.sum(out.lengths)) != n:
                    raise RuntimeError(f"ours emitted {int(np.sum(out.lengths))} tokens, not {n}")
                ours_tps = common.rate(t_ours, n)
                hf_tps = common.rate(t_hf, n)
                rows.append(
                    {
                        "model": name,
                        "batch": batch,
                        "mode": mode,
                        "new_tokens": cfg["new_tokens"],
                        "ours": t_ours.to_dict(),
                        "hf": t_hf.to_dict(),
                        "ours_tokens_per_s": ours_tps,
                        "hf_tokens_per_s": hf_tps,
                        "ratio": ours_tps[0] / hf_tps[0],
                        "greedy_match": _match(np.asarray(out.tokens), hf_out) if greedy else None,
                    }
                )
    return rows


def _ar_markdown(rows: list[dict]) -> str:
    table = []
    for r in rows:
        m = r["greedy_match"]
        table.append(
            [
                r["model"],
                r["batch"],
                r["mode"],
                common.mean_std(*r["ours_tokens_per_s"]),
                common.mean_std(*r["hf_tokens_per_s"]),
                f"{1e3 * r['ours']['mean_s'] / r['new_tokens']:.1f}",
                f"{1e3 * r['hf']['mean_s'] / r['new_tokens']:.1f}",
                common.fmt(r["ratio"], 2),
                "—" if m is None else f"{m['rows_equal']:.2f} / {m['prefix_frac']:.2f}",
            ]
        )
    return common.markdown_table(
        [
            "shape",
            "batch",
            "mode",
            "ours tok/s",
            "HF tok/s",
            "ours ms/step",
            "HF ms/step",
            "ours / HF",
            "greedy rows equal / prefix",
        ],
        table,
    )


# ----------------------------------------------------------------------------------------------
# Part 2: speculative.


def part_speculative(cfg: dict) -> dict:
    tiny = cfg["sd_drafter"] == "tiny"
    d_cfg = _config(cfg["sd_drafter"], cfg["vocab_size"], tiny_drafter=tiny)
    v_cfg = _config(cfg["sd_verifier"], cfg["vocab_size"])
    pair = common.embedded_pair("sd", d_cfg, v_cfg, noise=cfg["sd_noise"], seed=cfg["seed"])
    hf_v = hf_model(v_cfg, pair.verifier_params)
    hf_d = hf_model(d_cfg, pair.drafter_params)
    n_new = cfg["new_tokens"]
    inputs = common.random_inputs(1, cfg["input_len"], v_cfg.real_vocab_size, 1)
    ids = jax.block_until_ready(jnp.asarray(inputs))
    rng = jax.random.PRNGKey(0)

    def ours(method: str, gamma: int, x=ids):
        return lambda: generate(
            *common.models_for(pair, method),
            x,
            method=method,
            gamma=gamma,
            temperature=0.0,
            max_decode_len=n_new,
            rng=rng,
        )

    res: dict[str, Any] = {"pair": pair.description, "params_m": pair.params_m()}
    t_ar, ar_out = common.time_call(ours("verifier", 1), trials=cfg["trials"])
    t_hf_ar, hf_ar_out = common.time_host_call(
        lambda: hf_generate(hf_v, inputs, n_new, greedy=True), trials=cfg["trials"]
    )
    ar_tokens = np.asarray(ar_out.tokens)
    res["ours_ar"] = t_ar.to_dict()
    res["hf_ar"] = t_hf_ar.to_dict()
    res["ours_vs_hf_greedy_match"] = _match(ar_tokens, hf_ar_out)
    rows = []
    for gamma in cfg["sd_gammas"]:
        logging.info("SD gamma %d", gamma)
        t_sd, sd_out = common.time_call(ours("spec_decode", gamma), trials=cfg["trials"])
        sd_tokens = np.asarray(sd_out.tokens)
        if not np.array_equal(sd_tokens, ar_tokens):
            raise AssertionError(f"our greedy spec_decode (γ={gamma}) differs from verifier-only")
        stats = summarize_stats(sd_out.stats.as_dict(), "spec_decode")
        hf_kw = dict(
            assistant_model=hf_d,
            decoder_attention_mask=torch.ones(1, 1, dtype=torch.long),
            num_assistant_tokens=gamma,
            num_assistant_tokens_schedule="constant",
        )
        hf_d.generation_config.num_assistant_tokens = gamma
        hf_d.generation_config.num_assistant_tokens_schedule = "constant"
        # HF's default threshold 0.4 ends a draft once the assistant's top probability drops
        # below it, which with near-uniform random models means one draft token per round.
        hf_d.generation_config.assistant_confidence_threshold = 0.0
        t_hf_sd, hf_sd_out = common.time_host_call(
            lambda: hf_generate(hf_v, inputs, n_new, greedy=True, **hf_kw),  # noqa: B023
            trials=cfg["trials"],
        )
        if not np.array_equal(hf_sd_out, hf_ar_out):
            raise AssertionError(f"HF assisted generation (γ={gamma}) differs from HF greedy")
        counts = _hf_counts(hf_v, hf_d, inputs, n_new, hf_kw)
        rows.append(
            {
                "gamma": gamma,
                "hf_schedule": "constant",
                "ours_sd": t_sd.to_dict(),
                "hf_sd": t_hf_sd.to_dict(),
                "ours_speedup": t_ar.mean_s / t_sd.mean_s,
                "hf_speedup": t_hf_ar.mean_s / t_hf_sd.mean_s,
                "ours_over_hf_wallclock": t_sd.mean_s / t_hf_sd.mean_s,
                "ours_stats": {
                    k: stats[k] for k in ("acceptance_rate", "block_efficiency", "n_ver", "n_dr")
                },
                "hf_counts": counts,
                "outputs_match_ar": True,
            }
        )
    # HF's own defaults for the assistant (whatever this transformers version resolves to).
    hf_d.generation_config.num_assistant_tokens = None
    hf_d.generation_config.num_assistant_tokens_schedule = None
    hf_d.generation_config.assistant_confidence_threshold = None
    default_kw = dict(
        assistant_model=hf_d, decoder_attention_mask=torch.ones(1, 1, dtype=torch.long)
    )
    try:
        t_def, def_out = common.time_host_call(
            lambda: hf_generate(hf_v, inputs, n_new, greedy=True, **default_kw),
            trials=cfg["trials"],
        )
        res["hf_default_assisted"] = {
            "timing": t_def.to_dict(),
            "speedup": t_hf_ar.mean_s / t_def.mean_s,
            "outputs_match_ar": bool(np.array_equal(def_out, hf_ar_out)),
            "counts": _hf_counts(hf_v, hf_d, inputs, n_new, default_kw),
        }
    except Exception as err:  # report it; keep the other results
        logging.warning("HF default assisted generation failed: %s", err)
        res["hf_default_assisted"] = {"error": repr(err)}
    res["rows"] = rows
    # Our speculative decoding at larger batches (HF assisted generation is batch-1 only).
    batch_rows = []
    gamma = max(cfg["sd_gammas"])
    for batch in cfg["sd_batch_sizes"]:
        x = common.random_inputs(batch, cfg["input_len"], v_cfg.real_vocab_size, 1)
        xd = jax.block_until_ready(jnp.asarray(x))
        logging.info("our SD batch %d", batch)
        t_b_ar, b_ar = common.time_call(ours("verifier", 1, xd), trials=cfg["trials"])
        t_b_sd, b_sd = common.time_call(ours("spec_decode", gamma, xd), trials=cfg["trials"])
        equal = bool(np.array_equal(np.asarray(b_ar.tokens), np.asarray(b_sd.tokens)))
        if not equal:
            raise AssertionError(f"our greedy spec_decode differs from verifier-only at B={batch}")
        stats = summarize_stats(b_sd.stats.as_dict(), "spec_decode")
        batch_rows.append(
            {
                "batch": batch,
                "gamma": gamma,
                "ar": t_b_ar.to_dict(),
                "sd": t_b_sd.to_dict(),
                "ar_tokens_per_s": common.rate(t_b_ar, batch * n_new),
                "sd_tokens_per_s": common.rate(t_b_sd, batch * n_new),
                "speedup": t_b_ar.mean_s / t_b_sd.mean_s,
                "acceptance_rate": stats["acceptance_rate"],
                "block_efficiency": stats["block_efficiency"],
                "loop_rounds": int(np.max(np.asarray(b_sd.stats.n_ver))),
                "outputs_match_ar": equal,
            }
        )
    res["batch_rows"] = batch_rows
    return res


def _hf_counts(hf_v, hf_d, inputs, n_new, kw) -> dict[str, float]:
    """Verifier and assistant forward calls of one HF assisted run (untimed)."""
    v_calls, d_calls = CallCounter(hf_v), CallCounter(hf_d)
    try:
        hf_generate(hf_v, inputs, n_new, greedy=True, **kw)
    finally:
        v_calls.remove()
        d_calls.remove()
    return {
        "verifier_calls": v_calls.count,
        "assistant_calls": d_calls.count,
        "tokens_per_verifier_call": n_new / max(v_calls.count, 1),
    }


def _sd_markdown(res: dict, cfg: dict) -> str:
    n = cfg["new_tokens"]
    p_d, p_v = res["params_m"]
    lines = [
        f"Pair: {res['pair']} ({p_d:.1f}M / {p_v:.1f}M parameters); batch 1, greedy, "
        f"{cfg['input_len']} → {n} tokens. Verifier-only: ours "
        f"{common.mean_std(res['ours_ar']['mean_s'], res['ours_ar']['std_s'], 3)} s, HF "
        f"{common.mean_std(res['hf_ar']['mean_s'], res['hf_ar']['std_s'], 3)} s "
        f"(our greedy tokens equal HF's: rows {res['ours_vs_hf_greedy_match']['rows_equal']:.2f},"
        f" prefix {res['ours_vs_hf_greedy_match']['prefix_frac']:.2f}).",
        "",
    ]
    table = []
    for r in res["rows"]:
        st, hc = r["ours_stats"], r["hf_counts"]
        table.append(
            [
                r["gamma"],
                common.mean_std(r["ours_sd"]["mean_s"], r["ours_sd"]["std_s"], 3),
                common.fmt(r["ours_speedup"], 2),
                f"{common.fmt(st['acceptance_rate'], 2)} / {common.fmt(st['block_efficiency'], 2)}",
                common.mean_std(r["hf_sd"]["mean_s"], r["hf_sd"]["std_s"], 3),
                common.fmt(r["hf_speedup"], 2),
                f"{hc['verifier_calls']} / {hc['assistant_calls']} / "
                f"{hc['tokens_per_verifier_call']:.2f}",
                common.fmt(r["ours_over_hf_wallclock"], 2),
                "yes" if r["outputs_match_ar"] else "NO",
            ]
        )
    d = res.get("hf_default_assisted", {})
    if "timing" in d:
        table.append(
            [
                "HF default",
                "—",
                "—",
                "—",
                common.mean_std(d["timing"]["mean_s"], d["timing"]["std_s"], 3),
                common.fmt(d["speedup"], 2),
                f"{d['counts']['verifier_calls']} / {d['counts']['assistant_calls']} / "
                f"{d['counts']['tokens_per_verifier_call']:.2f}",
                "—",
                "yes" if d["outputs_match_ar"] else "NO",
            ]
        )
    lines.append(
        common.markdown_table(
            [
                "γ",
                "ours SD s",
                "ours speed-up",
                "ours a / τ",
                "HF assisted s",
                "HF speed-up",
                "HF verifier / assistant calls / τ",
                "ours / HF wall-clock",
                "outputs = AR",
            ],
            table,
        )
    )
    if res.get("batch_rows"):
        lines += ["", "Our speculative decoding at larger batches (greedy):", ""]
        rows = []
        for r in res["batch_rows"]:
            rows.append(
                [
                    r["batch"],
                    r["gamma"],
                    common.mean_std(*r["ar_tokens_per_s"]),
                    common.mean_std(*r["sd_tokens_per_s"]),
                    common.fmt(r["speedup"], 2),
                    common.fmt(r["acceptance_rate"], 2),
                    common.fmt(r["block_efficiency"], 2),
                    r["loop_rounds"],
                    "yes" if r["outputs_match_ar"] else "NO",
                ]
            )
        lines.append(
            common.markdown_table(
                [
                    "batch",
                    "γ",
                    "AR tok/s",
                    "SD tok/s",
                    "SD speed-up",
                    "a",
                    "τ",
                    "loop rounds",
                    "outputs = AR",
                ],
                rows,
            )
        )
    return "\n".join(lines)


def run(cfg: dict) -> tuple[dict, str]:
    torch.set_num_threads(cfg["torch_threads"])
    ar_rows = part_autoregressive(cfg)
    sections = ["### Autoregressive decoding, ours vs HF", "", _ar_markdown(ar_rows)]
    results: dict[str, Any] = {"config": cfg, "autoregressive": ar_rows}
    if cfg["sd"]:
        sd = part_speculative(cfg)
        results["speculative"] = sd
        sections += ["", "### Speculative decoding vs HF assisted generation", ""]
        sections.append(_sd_markdown(sd, cfg))
    return results, "\n".join(sections)


def main(argv: list[str] | None = None) -> tuple[str, str]:
    """Parses `argv`, runs, writes the report; returns (json path, markdown path)."""
    common.setup_logging()
    cfg = parse_args(argv)
    out_dir, machine = cfg.pop("out_dir"), cfg.pop("machine")
    load_at_start = os.getloadavg()
    results, markdown = run(cfg)
    env = common.environment("float32", machine, load_at_start)
    env.update(
        torch_version=torch.__version__,
        transformers_version=transformers.__version__,
        torch_threads=torch.get_num_threads(),
    )
    return common.write_report(out_dir, "bench_vs_hf", env, results, markdown)


if __name__ == "__main__":
    main()
