// Copying a secret (a device token) for the operator: the async clipboard
// API where the browser allows it, else the text is selected in its field
// so Ctrl+C / Cmd+C copies it.

/** 'copied', or 'selected' when only the selection could be made (the caller says "press Ctrl+C"). */
export async function copyText(text: string, field: HTMLInputElement | HTMLTextAreaElement | undefined): Promise<'copied' | 'selected'> {
  try {
    if (!navigator.clipboard) throw new Error('no clipboard API');
    await navigator.clipboard.writeText(text);
    return 'copied';
  } catch {
    if (field) {
      field.focus();
      field.select();
    }
    return 'selected';
  }
}
