"""The PyTorch side: sentence-transformers and transformers on the same checkpoints, as
references for parity (on the CPU) and as speed anchors (on the check's device)."""

import os
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402


def versions():
    import transformers
    try:
        import sentence_transformers
        st = sentence_transformers.__version__
    except ImportError:
        st = "missing"
    return {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "transformers": transformers.__version__, "sentence_transformers": st}


def synchronize(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def free_memory():
    import gc
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def gpu_used_bytes():
    """Bytes in use on GPU 0 by every process (total - free), or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    return total - free


def sentence_transformer(folder, device):
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(str(folder), device=str(device))


def st_embed(model, texts, batch_size):
    return model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                        show_progress_bar=False)


def st_rate(model, texts, batch_size, min_seconds, device):
    """sentence-transformers texts/s on `texts` at `batch_size`: one warm-up pass, then passes
    until `min_seconds` have been measured."""
    st_embed(model, texts, batch_size)
    passes, elapsed = 0, 0.0
    while elapsed < min_seconds or passes == 0:
        synchronize(device)
        start = time.perf_counter()
        st_embed(model, texts, batch_size)
        synchronize(device)
        elapsed += time.perf_counter() - start
        passes += 1
    return passes * len(texts) / elapsed


def classify(folder, texts):
    """Per text {label: softmax score}, on the CPU."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    out = []
    with torch.inference_mode():
        for text in texts:
            batch = tokenizer(text, return_tensors="pt", truncation=True, max_length=512)
            scores = torch.softmax(model(**batch).logits[0], dim=-1).tolist()
            out.append(dict(zip(labels, scores)))
    return out


class Generator:
    """A transformers seq2seq or causal LM, greedy."""

    def __init__(self, folder, kind, device):
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
        self.kind, self.device = kind, device
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        cls = AutoModelForSeq2SeqLM if kind == "text2text" else AutoModelForCausalLM
        # The checkpoints are saved in float32; .float() keeps it so whatever the version's
        # default dtype.
        self.model = cls.from_pretrained(str(folder)).float().to(device).eval()

    def ids(self, prompt):
        # modelhost tokenizes a plain Llama prompt without special tokens, a T5 one with </s>.
        special = self.kind == "text2text"
        return self.tokenizer(prompt, return_tensors="pt",
                              add_special_tokens=special).input_ids.to(self.device)

    def generate(self, prompt, new_tokens, exact=False):
        """(text, tokens generated, seconds). `exact` forbids stopping before `new_tokens`."""
        ids = self.ids(prompt)
        extra = {"min_new_tokens": new_tokens} if exact else {}
        synchronize(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(ids, max_new_tokens=new_tokens, do_sample=False,
                                      num_beams=1, pad_token_id=self.tokenizer.pad_token_id,
                                      **extra)
        synchronize(self.device)
        elapsed = time.perf_counter() - start
        new = out[0] if self.kind == "text2text" else out[0, ids.shape[1]:]
        new = new.tolist()
        if self.kind == "text2text" and new and new[0] == self.model.config.decoder_start_token_id:
            new = new[1:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return text, len(new), elapsed
