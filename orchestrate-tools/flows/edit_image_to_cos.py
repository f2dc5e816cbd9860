"""Flow: edit one uploaded image, store the result in COS and answer with a download link."""

from ibm_watsonx_orchestrate.flow_builder.flows import END, START, Flow, flow
from imagedrop_flow_schemas import (
    CosImageOut,
    CosResultOut,
    ImageBase64,
    ImageFileIn,
    ImageFlowIn,
    ImageRequestIn,
)


@flow(name="imagedrop_edit_image_to_cos", display_name="Edit an image (saved to COS)",
      description="Edits one uploaded image with a prompt, saves the result in the output "
                  "bucket and answers with its object key and a presigned download URL.",
      input_schema=ImageFlowIn, output_schema=CosImageOut)
def build_edit_image_to_cos(aflow: Flow) -> Flow:
    """Upload -> base64 -> processImageAsyncToCos (callback with object key and URL)."""
    to_b64 = aflow.tool("image_to_base64", name="to_base64", input_schema=ImageFileIn,
                        output_schema=ImageBase64)
    to_b64.map_input(input_variable="image", expression="flow.input.image")
    edit = aflow.tool("processImageAsyncToCos", name="edit_image",
                      input_schema=ImageRequestIn, output_schema=CosResultOut)
    edit.map_input(input_variable="__requestBody__",
                   expression='{"prompt": flow.input.prompt, '
                              '"image_base64": flow.to_base64.output.image_base64}')
    aflow.sequence(START, to_b64, edit, END)
    return aflow
