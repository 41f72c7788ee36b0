"""The built-in ``yolo_detector``: ultralytics YOLO with an embedding for every detection.

Embeddings come from the same forward pass as the boxes. After NMS each box is mapped into
the letterboxed input and pooled with RoI align from the backbone's last stride-8 feature map
into a 4×4 grid of cells; the grid is flattened, square-rooted (the maps are non-negative
after SiLU, and the root keeps a few strong channels from dominating the cosine) and
L2-normalised. The backbone's early layers describe shape and texture whatever the classes
the head was trained on, and the grid keeps where in the box things are: on ShapeWorld this
puts an unseen star apart from the triangles the starter calls it, which the neck's pooled
features (the inputs of the Detect head, shaped by its three classes) did not do. The image
embedding is the neck's maps averaged over the image. No crop is decoded twice and nothing
is random.

Versions registered before the grid existed keep the pooling they were indexed with: their
stored ``detection_embedding`` width is the neck's channel sum, and such a version still
pools the neck (mixing two kinds of vectors in one index would make neighbours meaningless).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.errors import ValidationError
from workbench.extractors.base import Extractor, LoadContext
from workbench.extractors.spec import ExtractorSpec, parse_spec
from workbench.extractors.weights import check_weights

NAME = "yolo_detector"
DEFAULT_PARAMS = {"conf": 0.25, "iou": 0.7, "imgsz": 640, "max_det": 300}
GRID = 4  # RoI cells per side of the detection embedding
GRID_STRIDE = 8

DETECTIONS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["class", "confidence", "bbox"],
        "properties": {
            "class": {"type": "string"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "bbox": {
                "type": "object",
                "required": ["x", "y", "w", "h"],
                "properties": {k: {"type": "number"} for k in ("x", "y", "w", "h")},
            },
        },
    },
}


def yolo_spec(version: str, detection_dim: int, image_dim: int) -> ExtractorSpec:
    """The spec of one registered YOLO version (dims depend on the model's neck widths)."""
    return parse_spec({
        "feature_extractor_name": NAME,
        "version": version,
        "description": "Ultralytics YOLO detection with per-detection neck embeddings",
        "dependencies": ["ultralytics", "torch", "torchvision"],
        "features": [
            {"feature_type": "json", "feature_name": "detections"},
            {"feature_type": "embedding", "feature_name": "detection_embedding",
             "embedding_dim": detection_dim, "distance_metric": "cosine",
             "granularity": "detection"},
            {"feature_type": "embedding", "feature_name": "image_embedding",
             "embedding_dim": image_dim, "distance_metric": "cosine", "granularity": "image"},
        ],
        "output_schema": {"detections": DETECTIONS_SCHEMA},
        "input_mappings": {"image": "image"},
        "compute_profile": {"resource_type": "gpu", "fallback": "cpu"},
    })


class YoloDetector(Extractor):
    """The built-in detector: ultralytics YOLO boxes, an embedding per detection and per image."""

    def __init__(self, spec: ExtractorSpec | None = None):
        if spec is not None:
            self.spec = spec
        self._captured: dict[str, Any] = {}

    def load(self, context: LoadContext) -> None:
        """Load the weights, warm the predictor up and hook the layers the embeddings come from."""
        import numpy as np

        self.spec = context.spec
        self.params = {**DEFAULT_PARAMS, **context.params}
        self.device = context.device
        self.model = open_yolo(context.weights)
        self.names = dict(self.model.names)
        # The predictor runs a (fused, device-placed) copy of the network: set it up with one
        # tiny warm-up image, then hook the copy that will really run.
        self._predict([np.zeros((32, 32, 3), dtype=np.uint8)])
        network = self.model.predictor.model.model
        detect = network.model[-1]
        self.strides = [float(s) for s in detect.stride]
        self.grid_layer, grid_channels = _backbone_layer(network, GRID_STRIDE)
        detect.register_forward_pre_hook(self._keep_features)
        network.register_forward_pre_hook(self._keep_input)
        network.model[self.grid_layer].register_forward_hook(self._keep_grid_map)
        wanted = self.spec.feature("detection_embedding").embedding_dim
        neck_width = sum(int(c) for c in _neck_channels(network))
        # An older version indexed with pooled neck features keeps them (see the docstring).
        self.pool_neck = wanted == neck_width != grid_channels * GRID * GRID

    def _predict(self, bgr_images):
        return self.model.predict(
            bgr_images, conf=self.params["conf"], iou=self.params["iou"],
            imgsz=self.params["imgsz"], max_det=self.params["max_det"], device=self.device,
            batch=len(bgr_images), verbose=False,
        )

    def _keep_features(self, _module, args) -> None:
        self._captured["features"] = [t.detach() for t in args[0]]

    def _keep_input(self, _module, args) -> None:
        self._captured["input_shape"] = tuple(args[0].shape)

    def _keep_grid_map(self, _module, _args, output) -> None:
        self._captured["grid_map"] = output.detach()

    def _forward(self, images: list[Any]):
        """Run the model on RGB images; returns its results and the input's size, with the
        feature maps captured by the hooks."""
        import numpy as np

        # ultralytics reads numpy images as BGR (OpenCV's order).
        bgr = [np.ascontiguousarray(image[..., ::-1]) for image in images]
        self._captured.clear()
        results = self._predict(bgr)
        if self._captured["features"][0].shape[0] != len(images):
            raise RuntimeError("ultralytics split the batch; embeddings would be misaligned")
        _, _, in_h, in_w = self._captured["input_shape"]
        return results, (in_h, in_w)

    def _pool(self, boxes, results, input_size):
        rois = _letterbox_rois(boxes, [r.orig_shape for r in results], input_size)
        return (_pool_boxes(self._captured["features"], self.strides, rois) if self.pool_neck
                else _pool_grid(self._captured["grid_map"], GRID_STRIDE, rois))

    def embed_boxes(self, images: list[Any], boxes: list[Any]) -> list[Any]:
        """The detection embedding of given boxes (pixel ``xyxy``, one array per image):
        the same pooling as a detection's, for a box the model did not find itself (a
        reference drawn by a person, seen by another version)."""
        import torch

        if not images:
            return []
        with torch.inference_mode():
            results, input_size = self._forward(images)
            tensors = [torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes]
            pooled = self._pool(tensors, results, input_size)
        out, start = [], 0
        for b in tensors:
            out.append(pooled[start:start + len(b)])
            start += len(b)
        return out

    def process(self, images: list[Any]) -> list[dict[str, Any]]:
        """Per image: its detections (pixel centre boxes), their embeddings, an image embedding."""
        import torch

        if not images:
            return []
        with torch.inference_mode():
            results, input_size = self._forward(images)
            features = self._captured["features"]
            boxes = [r.boxes.xyxy.float() for r in results]
            det_embeddings = self._pool(boxes, results, input_size)
            image_embeddings = _pool_images(features)
        outputs = []
        start = 0
        for i, result in enumerate(results):
            n = len(result.boxes)
            xyxy = result.boxes.xyxy.cpu().numpy()
            conf = result.boxes.conf.cpu().numpy()
            cls = result.boxes.cls.cpu().numpy().astype(int)
            detections = [
                {
                    "class": self.names[int(c)],
                    "confidence": float(p),
                    "bbox": {"x": float((b[0] + b[2]) / 2), "y": float((b[1] + b[3]) / 2),
                             "w": float(b[2] - b[0]), "h": float(b[3] - b[1])},
                }
                for b, p, c in zip(xyxy, conf, cls, strict=True)
            ]
            outputs.append({
                "detections": detections,
                "detection_embedding": det_embeddings[start : start + n],
                "image_embedding": image_embeddings[i],
            })
            start += n
        return outputs


def _letterbox_rois(boxes, orig_shapes, input_shape):
    """Boxes in original pixels → ``(batch_index, x1, y1, x2, y2)`` in the network input.

    The inverse of ultralytics' ``scale_boxes``: the same gain and rounded padding.
    """
    import torch

    in_h, in_w = input_shape
    rows = []
    for index, (xyxy, (h0, w0)) in enumerate(zip(boxes, orig_shapes, strict=True)):
        gain = min(in_h / h0, in_w / w0)
        pad_x = round((in_w - w0 * gain) / 2 - 0.1)
        pad_y = round((in_h - h0 * gain) / 2 - 0.1)
        scaled = xyxy * gain + xyxy.new_tensor([pad_x, pad_y, pad_x, pad_y])
        rows.append(torch.cat([scaled.new_full((len(scaled), 1), index), scaled], dim=1))
    return torch.cat(rows) if rows else torch.zeros((0, 5))


def _normalise(x):
    import torch

    return torch.nn.functional.normalize(x, dim=1, eps=1e-12)


def _pool_boxes(features, strides, rois):
    import torch
    from torchvision.ops import roi_align

    if len(rois) == 0:
        return __import__("numpy").zeros((0, sum(f.shape[1] for f in features)), "float32")
    pooled = []
    for level, stride in zip(features, strides, strict=True):
        region = roi_align(level.float(), rois.to(level.device, torch.float32), output_size=(2, 2),
                           spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)
        pooled.append(_normalise(region.mean(dim=(2, 3))))
    return _normalise(torch.cat(pooled, dim=1)).cpu().numpy()


def _pool_grid(feature_map, stride, rois):
    """Each box as a ``GRID``×``GRID`` RoI grid of one map: flattened, rooted, normalised."""
    import torch
    from torchvision.ops import roi_align

    if len(rois) == 0:
        return __import__("numpy").zeros((0, feature_map.shape[1] * GRID * GRID), "float32")
    region = roi_align(feature_map.float(), rois.to(feature_map.device, torch.float32),
                       output_size=(GRID, GRID), spatial_scale=1.0 / stride, sampling_ratio=2,
                       aligned=True)
    return _normalise(region.flatten(1).clamp(min=0).sqrt()).cpu().numpy()


def _backbone_layer(network, stride: int) -> tuple[int, int]:
    """(index, channels) of the backbone's last layer whose output has ``stride``.

    Found by running a blank image through the backbone once, so it holds for any YOLO
    detection architecture (v8, 11, …), whatever its layer numbering.
    """
    import torch

    size = 64
    parameter = next(network.parameters())
    x = torch.zeros((1, 3, size, size), device=parameter.device, dtype=parameter.dtype)
    outputs, found = [], None
    with torch.inference_mode():
        for index, layer in enumerate(network.model[:len(network.yaml["backbone"])]):
            if layer.f != -1:  # the routing of ultralytics' own forward pass
                x = outputs[layer.f] if isinstance(layer.f, int) else [
                    x if j == -1 else outputs[j] for j in layer.f]
            x = layer(x)
            outputs.append(x)
            if isinstance(x, torch.Tensor) and x.ndim == 4 and size // x.shape[2] == stride:
                found = (index, int(x.shape[1]))
    if found is None:
        raise ValidationError(f"the model's backbone has no stride-{stride} feature map")
    return found


def _neck_channels(network) -> list[int]:
    detect = network.model[-1]
    return [int(branch[0].conv.in_channels) for branch in detect.cv2]


def _pool_images(features):
    import torch

    pooled = [_normalise(level.float().mean(dim=(2, 3))) for level in features]
    return _normalise(torch.cat(pooled, dim=1)).cpu().numpy()


def embedding_dims(weights: Path | str) -> tuple[int, int]:
    """(detection, image) embedding widths of a YOLO model: its RoI grid (the stride-8
    backbone map's channels × ``GRID``²) and the sum of its neck channels."""
    import numpy as np

    probe = YoloDetector()
    probe.load(LoadContext(spec=yolo_spec("0.0.0", 1, 1), weights=Path(weights), device="cpu",
                           params={"imgsz": 64}))
    out = probe.process([np.zeros((64, 64, 3), dtype=np.uint8)])[0]
    width = int(out["image_embedding"].shape[0])
    if width <= 0:
        raise ValidationError(f"{weights}: the model produced no neck features")
    _, channels = _backbone_layer(probe.model.predictor.model.model, GRID_STRIDE)
    return channels * GRID * GRID, width


# -- loading a checkpoint: checked first, then handed to ultralytics ----------------------
def open_yolo(weights: Path | str | None):
    """Check a YOLO detection model without running it, load it, and explain every way that
    can fail (see ``workbench.extractors.weights`` for what is checked)."""
    if weights is None:
        raise ValidationError("a YOLO extractor version needs a weights file")
    text = str(weights)
    path = Path(text)
    if not path.exists():
        if path.parent == Path(".") and path.suffix == ".pt":
            path = _fetch_hub_weights(text)
        else:
            raise ValidationError(f"weights file {text} does not exist")
    if path.is_dir():
        raise ValidationError(f"{text} is a folder; give the .pt file (e.g. weights/best.pt)")
    if path.stat().st_size == 0:
        raise ValidationError(f"{path.name} is empty (0 bytes); it is not a model")
    checkpoint = check_weights(path)
    from ultralytics import YOLO

    try:
        model = YOLO(str(path))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValidationError(
            f"{path.name} is not a loadable ultralytics checkpoint ({reason}); export a .pt "
            "from ultralytics (model.save or a training run's weights/best.pt)"
        ) from None
    _check_detect(model, path.name)
    model.workbench_train_args = _train_args(checkpoint)
    return model


def _train_args(checkpoint: Any) -> dict[str, Any]:
    """What a checkpoint says about how it was trained (ultralytics keeps ``train_args``):
    image size, epochs, data set, base model. Plain values only."""
    args = checkpoint.get("train_args") if isinstance(checkpoint, dict) else None
    if not isinstance(args, dict):
        return {}
    return {key: args[key] for key in ("imgsz", "epochs", "data", "model", "batch")
            if isinstance(args.get(key), int | float | str) and not isinstance(args[key], bool)}


def _fetch_hub_weights(name: str) -> Path:
    """Download an ultralytics release asset (``yolo11n.pt``) to check it before loading."""
    from ultralytics.utils.downloads import attempt_download_asset

    try:
        path = Path(attempt_download_asset(name))
        if not path.is_file():
            raise FileNotFoundError(f"{name} was not downloaded")
    except Exception as exc:
        raise ValidationError(
            f"could not fetch {name!r} ({str(exc).splitlines()[0] if str(exc) else exc}). "
            "This machine is offline or cannot reach the model hub: download the .pt "
            "elsewhere and register the local file with `workbench models add PATH/TO/"
            f"{name}` (or upload it on the Detect page)"
        ) from None
    return path


def _check_detect(model, label: str) -> None:
    task = getattr(model, "task", None)
    if task != "detect":
        raise ValidationError(
            f"{label} is a {task or 'unknown'} model; the workbench needs an object detection "
            "(task 'detect') model"
        )
    if not getattr(model, "names", None):
        raise ValidationError(f"{label} has no class names")
