"""Drives modelhost's `openai` module with the real OpenAI Python client and prints, as one JSON
object, what the client got: whole and streamed chat completions and completions, stop sequences,
seeded sampling, embeddings, the model list, and the errors of bad requests (status, type, param,
code as the client parsed them). The integration test `openai_api` asserts on it.

Usage: openai_client.py BASE_URL CHAT_MODEL EMBEDDING_MODEL
"""

import json
import sys

from openai import APIStatusError, OpenAI


def streamed(chunks):
    """Text pieces, finish reason, roles and usage of a streamed (chat) completion."""
    pieces, roles, finish, usage = [], [], None, None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            delta = getattr(choice, "delta", None)
            text = delta.content if delta is not None else choice.text
            if delta is not None and delta.role:
                roles.append(delta.role)
            if text:
                pieces.append(text)
            if choice.finish_reason:
                finish = choice.finish_reason
    return {"text": "".join(pieces), "pieces": len(pieces), "roles": roles,
            "finish_reason": finish, "usage": usage}


def failure(call):
    """The error a request that must fail got, as the client parsed it."""
    try:
        call()
    except APIStatusError as e:
        return {"status": e.status_code, "type": e.type, "param": e.param, "code": e.code,
                "message": e.message}
    return {"status": 200}


def main():
    base_url, chat_model, embedding_model = sys.argv[1:4]
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=300)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    greedy = {"max_tokens": 24, "temperature": 0}
    out = {}

    chat = client.chat.completions.create(model=chat_model, messages=messages, **greedy)
    choice = chat.choices[0]
    out["chat"] = {"object": chat.object, "role": choice.message.role,
                   "text": choice.message.content, "finish_reason": choice.finish_reason,
                   "usage": chat.usage.model_dump(), "model": chat.model}
    out["chat_stream"] = streamed(client.chat.completions.create(
        model=chat_model, messages=messages, stream=True,
        stream_options={"include_usage": True}, **greedy))

    # A stop sequence taken from the middle of the greedy reply cuts the reply just before it.
    words = out["chat"]["text"].split()
    stop = words[len(words) // 2] if words else "Paris"
    stopped = client.chat.completions.create(model=chat_model, messages=messages, stop=[stop],
                                             **greedy)
    out["chat_stop"] = {"stop": stop, "text": stopped.choices[0].message.content,
                        "finish_reason": stopped.choices[0].finish_reason}

    seeded = {"max_tokens": 16, "temperature": 0.9, "top_p": 0.9, "seed": 7}
    out["seeded"] = [client.chat.completions.create(model=chat_model, messages=messages,
                                                    **seeded).choices[0].message.content
                     for _ in range(2)]

    prompt = "The capital of France is"
    completion = client.completions.create(model=chat_model, prompt=prompt, **greedy)
    out["completion"] = {"object": completion.object, "text": completion.choices[0].text,
                         "finish_reason": completion.choices[0].finish_reason,
                         "usage": completion.usage.model_dump()}
    out["completion_stream"] = streamed(client.completions.create(
        model=chat_model, prompt=prompt, stream=True, **greedy))

    embeddings = client.embeddings.create(model=embedding_model,
                                          input=["hello world", "the capital of France"])
    out["embeddings"] = [len(e.embedding) for e in embeddings.data]
    out["models"] = sorted(m.id for m in client.models.list())
    out["model"] = client.models.retrieve(chat_model).id
    out["embedding_model"] = client.models.retrieve(embedding_model).id

    out["errors"] = {
        "unknown_model": failure(lambda: client.chat.completions.create(
            model="no-such-model", messages=messages)),
        "two_choices": failure(lambda: client.chat.completions.create(
            model=chat_model, messages=messages, n=2)),
        "bad_temperature": failure(lambda: client.chat.completions.create(
            model=chat_model, messages=messages, temperature=-1)),
        "embedding_model_for_chat": failure(lambda: client.chat.completions.create(
            model=embedding_model, messages=messages)),
        "no_messages": failure(lambda: client.chat.completions.create(
            model=chat_model, messages=[])),
        "unknown_model_listed": failure(lambda: client.models.retrieve("no-such-model")),
        "unsupported_field": failure(lambda: client.chat.completions.create(
            model=chat_model, messages=messages, logit_bias={"42": 1})),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
