"""Flow: edit one uploaded image and show the result in chat (base64, no storage involved)."""

from ibm_watsonx_orchestrate.flow_builder.flows import END, START, Flow, flow
from imagedrop_flow_schemas import (
    B64ResultOut,
    ChatImageOut,
    ImageBase64,
    ImageFileIn,
    ImageFlowIn,
    ImageRequestIn,
    Markdown,
    MarkdownIn,
)


@flow(name="imagedrop_edit_image_in_chat", display_name="Edit an image (shown in chat)",
      description="Edits one uploaded image with a prompt and shows the edited image in the "
                  "chat. The edit runs asynchronously in imagedrop; the flow waits for it.",
      input_schema=ImageFlowIn, output_schema=ChatImageOut)
def build_edit_image_in_chat(aflow: Flow) -> Flow:
    """Upload -> base64 -> processImageAsyncToBase64 (callback) -> markdown image if it worked."""
    to_b64 = aflow.tool("image_to_base64", name="to_base64", input_schema=ImageFileIn,
                        output_schema=ImageBase64)
    to_b64.map_input(input_variable="image", expression="flow.input.image")
    edit = aflow.tool("processImageAsyncToBase64", name="edit_image",
                      input_schema=ImageRequestIn, output_schema=B64ResultOut)
    edit.map_input(input_variable="__requestBody__",
                   expression='{"prompt": flow.input.prompt, '
                              '"image_base64": flow.to_base64.output.image_base64}')
    show = aflow.tool("image_markdown", name="show_image", input_schema=MarkdownIn,
                      output_schema=Markdown)
    show.map_input(input_variable="result_image_base64",
                   expression="flow.edit_image.output.__requestBody__.result_image_base64")
    show.map_input(input_variable="result_mime_type",
                   expression="flow.edit_image.output.__requestBody__.result_mime_type")
    # A failed edit has no image to show: its status and error are the flow's answer.
    done = aflow.branch(name="edit_succeeded",
                        evaluator="flow.edit_image.output.__requestBody__.status == 'completed'")
    done.case(True, show).case(False, END)
    aflow.sequence(START, to_b64, edit, done)
    aflow.edge(show, END)
    return aflow
