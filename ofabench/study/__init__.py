"""Studies: the whole OFA pipeline from one YAML file (``ofabench study``, ``ofabench demo``)."""

from .config import StudyConfig, load_study, study_from_dict

__all__ = ["StudyConfig", "load_study", "study_from_dict"]
