"""Random-weight checkpoints of real model shapes, written into a model store in the Hugging Face
cache layout (<store>/models--ORG--NAME/snapshots/<rev>/..., refs/main), for a machine without
network access. Weights come from transformers' own initialisation of a model built from a
config (`from_config`, fixed seed) and are saved as safetensors; the tokenizer files come from
tests/fixtures/models (real tokenizers: bert-base-uncased WordPiece, T5 SentencePiece, SmolLM2
BPE with its chat template).

The weights are random, so the numbers say nothing about quality; they exercise the real code
paths at the real sizes, which is what parity, speed and memory checks need.
"""

import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURES = ROOT / "tests/fixtures/models"
ORG = "gpu-check"
REVISION = "random-seed0"

# bert-base-uncased's WordPiece tokenizer (30522 tokens), carried with a fixture.
BERT_TOKENIZER = FIXTURES / "distilbert-tiny-random-cls/tokenizer.json"
BERT_TOKENIZER_CONFIG = {
    "tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512,
    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def repo_name(short):
    return f"{ORG}/{short}"


def snapshot_dir(store, name):
    return Path(store) / ("models--" + name.replace("/", "--")) / "snapshots" / REVISION


def _write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _publish(store, name, build):
    """Builds the snapshot of `name` in a temporary folder with `build(folder)`, then moves it in
    place and points refs/main at it."""
    repo = Path(store) / ("models--" + name.replace("/", "--"))
    final = repo / "snapshots" / REVISION
    if (final / "model.safetensors").is_file() and (repo / "refs/main").is_file():
        return final
    tmp = repo / "snapshots" / (REVISION + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs/main").write_text(REVISION)
    return final


def _save(model, folder):
    import torch
    model = model.to(torch.float32).eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    # save_pretrained may add files the host does not need; keep config + weights.
    for extra in folder.glob("*.bin"):
        extra.unlink()


def _bert_tokenizer(folder):
    shutil.copy2(BERT_TOKENIZER, folder / "tokenizer.json")
    _write_json(folder / "tokenizer_config.json", BERT_TOKENIZER_CONFIG)


def make_minilm(store):
    """sentence-transformers/all-MiniLM-L6-v2's shape: BertModel 384 wide, 6 layers, mean pooling,
    L2-normalized (modules.json, 1_Pooling, 2_Normalize, sentence_bert_config.json)."""
    import torch
    from transformers import BertConfig, BertModel

    def build(folder):
        torch.manual_seed(0)
        config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                            num_attention_heads=12, intermediate_size=1536,
                            max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu",
                            layer_norm_eps=1e-12, architectures=["BertModel"])
        _save(BertModel(config), folder)
        _bert_tokenizer(folder)
        _write_json(folder / "modules.json", [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ])
        _write_json(folder / "sentence_bert_config.json", {"max_seq_length": 256, "do_lower_case": False})
        _write_json(folder / "1_Pooling/config.json", {
            "word_embedding_dimension": 384, "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False, "include_prompt": True,
        })
        (folder / "2_Normalize").mkdir(exist_ok=True)

    return _publish(store, repo_name("minilm-l6-random"), build)


def make_bert_classifier(store):
    """bert-base-uncased's shape (768 wide, 12 layers) with a 3-label classification head."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    def build(folder):
        torch.manual_seed(0)
        labels = ["negative", "neutral", "positive"]
        config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                            num_attention_heads=12, intermediate_size=3072,
                            max_position_embeddings=512, architectures=["BertForSequenceClassification"],
                            id2label=dict(enumerate(labels)),
                            label2id={label: i for i, label in enumerate(labels)})
        _save(BertForSequenceClassification(config), folder)
        _bert_tokenizer(folder)

    return _publish(store, repo_name("bert-base-cls-random"), build)


def make_distilbert_classifier(store):
    """distilbert-base-uncased-finetuned-sst-2-english's shape (768 wide, 6 layers, 2 labels)."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    def build(folder):
        torch.manual_seed(0)
        config = DistilBertConfig(vocab_size=30522, dim=768, n_layers=6, n_heads=12,
                                  hidden_dim=3072, max_position_embeddings=512,
                                  architectures=["DistilBertForSequenceClassification"],
                                  id2label={0: "NEGATIVE", 1: "POSITIVE"},
                                  label2id={"NEGATIVE": 0, "POSITIVE": 1})
        _save(DistilBertForSequenceClassification(config), folder)
        _bert_tokenizer(folder)

    return _publish(store, repo_name("distilbert-sst2-random"), build)


T5_SHAPES = {
    # google/flan-t5-base (the summarizer's default) and google/flan-t5-small.
    "base": dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12),
    "small": dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6),
}


def make_t5(store, size):
    """flan-T5's layout (gated-gelu, untied lm_head) at flan-t5-`size`'s shape."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    fixture = FIXTURES / "t5-tiny-random-realvocab"

    def build(folder):
        torch.manual_seed(0)
        config = T5Config(vocab_size=32128, feed_forward_proj="gated-gelu",
                          tie_word_embeddings=False, decoder_start_token_id=0, eos_token_id=1,
                          pad_token_id=0, architectures=["T5ForConditionalGeneration"],
                          **T5_SHAPES[size])
        _save(T5ForConditionalGeneration(config), folder)
        for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            shutil.copy2(fixture / name, folder / name)

    return _publish(store, repo_name(f"flan-t5-{size}-random"), build)


def make_llama(store):
    """HuggingFaceTB/SmolLM2-135M-Instruct's shape (Llama, 30 layers, 576 wide, 9/3 heads, tied
    embeddings) as model.safetensors, with its real tokenizer, chat template and generation
    config."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    fixture = FIXTURES / "smollm2-135m-instruct"

    def build(folder):
        torch.manual_seed(0)
        fields = json.loads((fixture / "config.json").read_text())
        fields = {k: v for k, v in fields.items() if not k.startswith("_")}
        fields.pop("torch_dtype", None)
        # Wider than the default 0.02 so the random model's logits have clear winners: greedy
        # text then does not hinge on the last bit of a near-tie.
        fields["initializer_range"] = 0.08
        config = LlamaConfig(**fields)
        _save(LlamaForCausalLM(config), folder)
        # transformers 5 writes the rotary base only as rope_parameters.rope_theta; modelhost
        # reads the top-level rope_theta (transformers 4's key, which real checkpoints carry)
        # and would otherwise fall back to 10000. Write both, as a checkpoint on the Hub has.
        saved = json.loads((folder / "config.json").read_text())
        theta = (saved.get("rope_parameters") or {}).get("rope_theta", fields.get("rope_theta"))
        if theta is not None and "rope_theta" not in saved:
            saved["rope_theta"] = theta
            _write_json(folder / "config.json", saved)
        for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            shutil.copy2(fixture / name, folder / name)

    return _publish(store, repo_name("smollm2-135m-random"), build)


def make_all(store, t5_size, log):
    """Every checkpoint the check uses: {kind: (name, snapshot folder)}."""
    made = {}
    for kind, make, args in (
        ("embedding", make_minilm, ()),
        ("bert-cls", make_bert_classifier, ()),
        ("distilbert-cls", make_distilbert_classifier, ()),
        ("text2text", make_t5, (t5_size,)),
        ("text-generation", make_llama, ()),
    ):
        start = time.perf_counter()
        folder = make(store, *args)
        name = f"{ORG}/{folder.parent.parent.name.split('--', 2)[2]}"
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        log(f"  {name}: {size / 2**20:.0f} MiB ({time.perf_counter() - start:.1f} s)")
        made[kind] = (name, folder)
    return made
