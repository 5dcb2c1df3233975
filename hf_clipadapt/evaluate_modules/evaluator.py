"""evaluate's image-classification evaluator, for the metrics of this package.

`evaluate.evaluator("image-classification")` (evaluate 0.4.6) works with this package's
models when given a saved folder (`model_or_pipeline="path/to/saved"`) or a model plus
its image processor (`model_or_pipeline=model, feature_extractor=processor`). Two gaps
remain, and `image_classification_evaluator()` closes both without patching anything:

* A `transformers.Pipeline` object fails under transformers 5 with `module transformers
  has no attribute TFPreTrainedModel`: evaluate's `Evaluator.prepare_pipeline`
  (evaluate/evaluator/base.py) tests `isinstance(x, transformers.TFPreTrainedModel)`,
  a class transformers 5 removed, whenever `x` is neither a string nor a PyTorch model.
  Here a pipeline is taken as it is.
* The stock evaluator keeps only each image's top label, so a metric that needs a
  per-sample confidence (`open_set`'s `scores`) cannot be computed. Here, when the metric
  has a `scores` input, the pipeline's top probability (the maximum softmax probability)
  goes with each prediction.
"""

from __future__ import annotations


def image_classification_evaluator():
    """An `evaluate` image-classification evaluator that also accepts a pipeline object
    under transformers 5 and passes `scores` (top probability) to metrics that take them,
    e.g. `load_metric("open_set", unknown_index=-1)`."""
    from evaluate.evaluator import ImageClassificationEvaluator
    from transformers import Pipeline

    class ScoredImageClassificationEvaluator(ImageClassificationEvaluator):
        _wants_scores = False

        def prepare_pipeline(self, model_or_pipeline, tokenizer=None, feature_extractor=None, device=None):
            if isinstance(model_or_pipeline, Pipeline):
                if model_or_pipeline.task != self.task:
                    raise ValueError(f"this pipeline's task is {model_or_pipeline.task!r}, not {self.task!r}")
                return model_or_pipeline
            return super().prepare_pipeline(model_or_pipeline, tokenizer, feature_extractor, device)

        def prepare_metric(self, metric):
            metric = super().prepare_metric(metric)
            features = metric.features[0] if isinstance(metric.features, list) else metric.features
            self._wants_scores = "scores" in (features or {})
            return metric

        def predictions_processor(self, predictions, label_mapping):
            out = super().predictions_processor(predictions, label_mapping)
            if self._wants_scores:
                out["scores"] = [float(max(p["score"] for p in pred)) for pred in predictions]
            return out

    return ScoredImageClassificationEvaluator()
