"""Export: the whole ensemble as ONE graph, with its manifest, for serving without Python.

    adpolicy export [CHECKPOINT] -o ARTIFACT_DIR [--precision fp32|bf16|fp16|auto]
        [--target torchscript|neuron|neuronx|torch-export] [--calibration ads.jsonl]
    adpolicy export [CHECKPOINT] --check-neuron

Modules: :mod:`export.artifact` (the artifact format: ``save_artifact`` / ``load_artifact``),
:mod:`export.trace` (TorchScript tracing and the eager parity check), :mod:`export.precision`
(parity-gated 16-bit encoders), :mod:`export.neuron` (AWS Inferentia / Trainium),
:mod:`export.opcheck` (operators outside Neuron's supported lists), :mod:`export.torch_export`
(torch.export + AOTInductor), :mod:`export.exporter` (the whole pipeline); ``export/cpp`` runs
an artifact's graph from C++ with libtorch alone.
"""

from export.artifact import Artifact, ArtifactError, load_artifact, save_artifact
from export.exporter import ExportOptions, export_checkpoint, export_model

__all__ = [
    "Artifact",
    "ArtifactError",
    "ExportOptions",
    "export_checkpoint",
    "export_model",
    "load_artifact",
    "save_artifact",
]
