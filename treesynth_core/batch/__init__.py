"""Batch generation: the calls a run would make, written as OpenAI Batch JSONL files, run on the
OpenAI Batch API (or anything serving Files and Batches) or ``vllm run-batch``, and brought back.

The flow: :mod:`.prepare` runs the normal work against a copy of the project with a model double
that writes each request down instead of sending it (:mod:`.replay`), so the files hold exactly what
the online run would send, each line's ``custom_id`` being the request's cache key; :mod:`.files`
shards them (50,000 lines and 200 MB a file); :mod:`.client` sends shards through the Files and
Batches endpoints and downloads what comes back; :mod:`.collect` keeps the replies in the project.
A later run finds them by cache key (:class:`.replay.BatchFirstLLM`, in every run's model stack),
so it completes without sending them again.
"""
