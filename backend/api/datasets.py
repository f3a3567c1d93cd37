"""Uploaded datasets."""
from __future__ import annotations

from flask import Blueprint, request

from .. import datasets
from ..errors import Invalid
from ..state import refit

bp = Blueprint("datasets", __name__)


@bp.post("/api/datasets")
def upload():
    upload = request.files.get("file")
    if upload is None:
        raise Invalid("Send the file as multipart/form-data in a field named 'file'", code="validation_error",
                      details={"field": "file"})
    info = datasets.store(refit().config.storage.data_dir, upload.filename or "", upload.read(), request.form.get("name"))
    return info, 201


@bp.get("/api/datasets")
def list_datasets():
    return {"datasets": datasets.listing(refit().config.storage.data_dir)}


@bp.get("/api/datasets/<dataset_id>")
def get_dataset(dataset_id: str):
    return datasets.details(refit().config.storage.data_dir, dataset_id)
