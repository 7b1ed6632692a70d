"""The records host calls return: the classes componentize-py generates from the WIT (whose
documentation they carry), under stable names. Enum fields hold members of `ModelType` and
`FinishReason`.

- `Registration` (`register_model`): model_id, new_registration, model_type, model_name,
  revision (the resolved commit), dimension (embedding models), reference_count (this module's),
  total_reference_count (all modules').
- `Release` (`release_model`): model_id, reference_count, total_reference_count.
- `Embeddings` (`generate_embeddings`): embeddings (one list of floats per text, in input
  order), model_id, dimension, cached (every vector from the cache), processing_time_ms,
  worker_id, input_tokens.
- `Classifications` (`classify`): results (one `Classification` per text: label (the best
  label, or None when it is below the requirement's threshold), score (the best label's),
  scores (every `LabelScore`: label, score; highest first)), model_id, processing_time_ms,
  worker_id.
- `Generation` (`generate_text`, `chat`): text, model_id, prompt_tokens, tokens_generated,
  finish_reason, processing_time_ms.
- `StreamUsage` (`TextStream.usage`): prompt_tokens, tokens_generated.
- `ModelStatus` (`list_models`, `ServiceStatus.loaded_models`): model_id, model_type,
  model_name, revision, reference_count, loaded, last_accessed (seconds since the epoch), source,
  device, workers, placement_note.
- `ServiceStatus` (`service_status`): initialized, worker_pool (enabled, num_workers,
  active_workers, pending_tasks, workers, notes), embedding_cache (enabled, cached_count,
  hit_rate), loaded_models, total_loaded_models, loaded_weights, module_references (module_id,
  model_id, reference_count).
"""

from ._bindings import wit

ModelType = wit.ModelType
FinishReason = wit.FinishReason
Registration = wit.Registration
Release = wit.Release
Embeddings = wit.Embeddings
LabelScore = wit.LabelScore
Classification = wit.Classification
Classifications = wit.Classifications
Generation = wit.Generation
StreamUsage = wit.StreamUsage
ModelStatus = wit.ModelStatus
ServiceStatus = wit.ServiceStatus
